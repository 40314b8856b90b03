import type { FullCryptoModule } from "../crypto/port.js";

/**
 * Counts every signature the crypto module makes, by DTBS/R (hex), for tests that must show an
 * attack got nothing signed: pass `wrapCrypto` to startTestServer's hooks and read `count(hash)`.
 */
export function moduleSignatureCounter(): { wrapCrypto: (crypto: FullCryptoModule) => FullCryptoModule; count: (data: Uint8Array) => number; counts: Map<string, number> } {
  const counts = new Map<string, number>();
  const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
  const wrapCrypto = (crypto: FullCryptoModule): FullCryptoModule =>
    new Proxy(crypto, {
      get(target, prop, receiver) {
        if (prop === "sign") {
          return async (...args: Parameters<FullCryptoModule["sign"]>) => {
            const key = hex(args[0].data);
            counts.set(key, (counts.get(key) ?? 0) + 1);
            return target.sign(...args);
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  return { wrapCrypto, count: (data) => counts.get(hex(data)) ?? 0, counts };
}
