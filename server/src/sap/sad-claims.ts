/**
 * The R.SAD claim set carried in the clear inside the envelope ("claims", sam.proto
 * AuthorizeRequest.r_sad) by the methods without a device key: the same claims, with the same
 * checks, as the device-key JWS payload (registration/device-jws.ts verifyDeviceJws), minus the
 * signature. What binds them to the signer is the factor the envelope carries with them (PIN, OTP,
 * login assertion), checked by the caller; what binds them to the transaction is "chal", which
 * works once.
 */
import { DeviceProofExpired, DeviceProofRefused } from "../registration/device-jws.js";

const jtiPattern = /^[A-Za-z0-9_-]{22,128}$/;

export interface SadClaimsCheck {
  /** The claims that must be present, exactly (no other claim is accepted). */
  claims: readonly string[];
  /** Expected string values of claims ("sub", "cred", "aud", "txn", "dtbsr"). */
  expect: Readonly<Record<string, string>>;
  now: Date;
  skewMs: number;
  maxLifetimeMs: number;
}

/**
 * Checks a plain claim set: a JSON object with exactly `claims`, the expected values, integer iat
 * and exp within the skew and lifetime, and a well-formed jti. Returns it; throws
 * {@link DeviceProofRefused} (or {@link DeviceProofExpired}) with a reason for the log only.
 */
export function checkSadClaims(value: unknown, o: SadClaimsCheck): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new DeviceProofRefused("claims is not a JSON object");
  const claims = value as Record<string, unknown>;
  const got = Object.keys(claims).sort();
  const want = [...o.claims].sort();
  if (got.length !== want.length || got.some((n, i) => n !== want[i])) throw new DeviceProofRefused("the claim set is not exactly the expected one");
  for (const [name, expected] of Object.entries(o.expect)) {
    if (claims[name] !== expected) throw new DeviceProofRefused(`claim ${name} does not match`);
  }
  const { iat, exp, jti } = claims;
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw new DeviceProofRefused("iat and exp must be integer NumericDates");
  const nowS = o.now.getTime() / 1000;
  if ((iat as number) > nowS + o.skewMs / 1000) throw new DeviceProofRefused("iat is in the future");
  if ((exp as number) <= nowS - o.skewMs / 1000) throw new DeviceProofExpired();
  if ((exp as number) < (iat as number) || (exp as number) - (iat as number) > o.maxLifetimeMs / 1000) throw new DeviceProofRefused("lifetime too long");
  if (typeof jti !== "string" || !jtiPattern.test(jti)) throw new DeviceProofRefused("jti is not 22 to 128 base64url characters");
  return claims;
}

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
