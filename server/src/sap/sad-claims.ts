/**
 * The R.SAD claim set carried in the clear inside the envelope ("claims", sam.proto
 * AuthorizeRequest.r_sad) by the methods without a device key: the same claims, with the same
 * checks, as the device-key JWS payload (registration/device-jws.ts verifyDeviceJws), minus the
 * signature. What binds them to the signer is the factor the envelope carries with them (PIN, OTP,
 * login assertion), checked by the caller; what binds them to the transaction is "chal", which
 * works once.
 */
import { checkClaimSet, type ClaimSetCheck } from "../registration/device-jws.js";

/** The R.SAD "claims" object: exactly the JWS payload's checks (checkClaimSet), without a signature. */
export type SadClaimsCheck = ClaimSetCheck & { expect: Readonly<Record<string, string>> };
export const checkSadClaims = (value: unknown, o: SadClaimsCheck): Record<string, unknown> => checkClaimSet(value, o);

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
