export { serve } from "./main.js";
export { parseConfig, readEnv, ConfigError, type Config } from "./config/config.js";
export { startServer, type InkanServer, type InkanServerOptions } from "./transport/server.js";
export { writeDevPki, createCertificateAuthority, issueCertificate, type DevPkiPaths } from "./pki/dev-pki.js";
export { InkanError, type ReasonCode } from "./errors.js";
