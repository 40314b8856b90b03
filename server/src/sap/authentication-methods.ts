/**
 * The signer authentication methods of R.SAD (sam.proto AuthenticationMethod) and the assurance
 * level each meets: one table read by the R.SAD verifier (what it enforces) and by GetInfo
 * and the credential views (what the SAM reports), so the two cannot disagree.
 */
import type { PolicyVersion } from "../admin/security-policy.js";

/** The proto3 JSON names of AuthenticationMethod, as the security policy lists them. */
export type AuthenticationMethodName =
  | "AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN"
  | "AUTHENTICATION_METHOD_PIN_AND_TOTP"
  | "AUTHENTICATION_METHOD_PIN"
  | "AUTHENTICATION_METHOD_LOGIN_ASSERTION";

/**
 * the level each method meets. Level 2: two factors of different kinds, separate from the
 * service login (device key + PIN; PIN + TOTP). Level 1: one factor (PIN alone; the login assertion).
 * Level 3 is level 2 on a SAM the deployment declares certified.
 */
export const methodLevel: Readonly<Record<AuthenticationMethodName, 1 | 2>> = {
  AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN: 2,
  AUTHENTICATION_METHOD_PIN_AND_TOTP: 2,
  AUTHENTICATION_METHOD_PIN: 1,
  AUTHENTICATION_METHOD_LOGIN_ASSERTION: 1,
};

/** The R.SAD envelope's members (sorted, comma-joined) that form each method (sam.proto AuthorizeRequest.r_sad). */
export const methodOfEnvelope: Readonly<Record<string, AuthenticationMethodName>> = {
  "pin,sad": "AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN",
  "claims,otp,pin": "AUTHENTICATION_METHOD_PIN_AND_TOTP",
  "claims,pin": "AUTHENTICATION_METHOD_PIN",
  "claims,login": "AUTHENTICATION_METHOD_LOGIN_ASSERTION",
};

const order = Object.keys(methodLevel) as AuthenticationMethodName[];

/** What this deployment can do beyond the policy: the login assertion needs a configured OpenID provider. */
export interface MethodAvailability {
  loginAssertion: boolean;
}

/**
 * The methods the SAM accepts (GetInfoResponse.authentication_methods): those the security policy
 * enables that this deployment can verify (no OpenID provider configured: no login assertion).
 */
export function enforcedMethods(policy: PolicyVersion, available: MethodAvailability): AuthenticationMethodName[] {
  const enabled = policy.policy.enabledAuthenticationMethods;
  const names = Array.isArray(enabled) ? enabled.filter((x): x is string => typeof x === "string") : [];
  return order.filter((m) => names.includes(m) && (m !== "AUTHENTICATION_METHOD_LOGIN_ASSERTION" || available.loginAssertion));
}

/**
 * The level a credential of `level` is authorized at under `policy`: level 3 only where the policy
 * declares a certified SAM, else undefined (R-3.1.4: such a credential's level cannot be met).
 */
export function enforcedLevel(level: number, policy: PolicyVersion): 1 | 2 | 3 | undefined {
  if (level === 1 || level === 2) return level;
  if (level === 3 && policy.policy.certified === true) return 3;
  return undefined;
}

/**
 * The methods a credential of assurance `level` accepts (CredentialInfo.authentication_methods): the
 * enforced ones that meet its level (R-3.1.4: a level-2 or level-3 credential never accepts a
 * one-factor method). Empty when the level cannot be enforced.
 */
export function credentialMethods(level: number, policy: PolicyVersion, available: MethodAvailability): AuthenticationMethodName[] {
  const enforced = enforcedLevel(level, policy);
  if (enforced === undefined) return [];
  return enforcedMethods(policy, available).filter((m) => methodLevel[m] >= Math.min(enforced, 2));
}
