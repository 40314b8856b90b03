// The R.SAD "claims" object of the methods without a device key gets the JWS payload's checks
// (registration/device-jws.ts checkClaimSet); what binds it to the signer is the factor the envelope
// carries with it (PIN, OTP, login assertion), and to the transaction "chal", which works once.

/**
 * Throws a SyntaxError when any JSON object in `text`, at any depth, repeats a member name
 * (JSON.parse would keep the last one silently: sam.proto allows no duplicate names). `text` must
 * already be valid JSON.
 */
export function assertNoDuplicateMembers(text: string): void {
  const stack: (Set<string> | undefined)[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top) {
        let k = j + 1;
        while (/\s/.test(text[k] ?? "")) k++;
        if (text[k] === ":") {
          const name = JSON.parse(text.slice(i, j + 1)) as string;
          if (top.has(name)) throw new SyntaxError(`duplicate member "${name}"`);
          top.add(name);
        }
      }
      i = j;
    } else if (c === "{") stack.push(new Set());
    else if (c === "[") stack.push(undefined);
    else if (c === "}" || c === "]") stack.pop();
  }
}
