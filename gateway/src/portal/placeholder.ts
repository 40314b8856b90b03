/** The page served at `/` until the portal bundle is built. */
export const placeholderPage = `<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>Inkan</title></head>
<body><main><h1>Inkan</h1><p>署名ポータル / Signer portal</p></main></body></html>
`;
