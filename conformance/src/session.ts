/**
 * One protocol's view of the target: the SCA clients, the registration operator's client, the
 * signer's device (the SDK builders), and the steps of the SAP the attack cases build on.
 */
import { createHash, createPublicKey, randomBytes, randomUUID, verify as verifySignature } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient, type Code, type Client } from "@connectrpc/connect";
import { buildActivationRequest, buildClaimsRSad, buildRSad, createDeviceKey, inkanErrorReason, openTotpEnrollment, type ClaimsRSadFactors, type ClaimsRSadInput, type DeviceKey, type Reason, type RSadInput } from "@inkan/sdk";
import { IdentityProofingMethod, RegistrationService, SignerKind } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { SignatureActivationService, type GetInfoResponse, type SadChallenge, type SignStreamResponse } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { AssuranceLevel, HashAlgorithm, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { issueSignerCertificate, loadIssuer, type Issuer } from "./pki.js";
import { parseOtpauth, type TotpGenerator } from "./totp.js";
import { privilegedTransport, transportFor, type Identities, type Protocol, type TargetOptions } from "./target.js";

/** The PIN the suite's test signers set at activation. */
export const conformancePin = "731902846";

/** An ACTIVE signer the suite enrolled, with one ACTIVE credential. */
export interface TestSigner {
  signerId: string;
  credentialId: string;
  deviceKey: DeviceKey;
  spki: Uint8Array;
  fingerprint: Uint8Array;
  /** The TOTP generator enrolled at activation, when the signer was enrolled with one. */
  totp?: TotpGenerator;
}

/** How {@link Session.newSigner} enrolls a signer beyond the defaults. */
export interface SignerOptions {
  /** Also enroll a TOTP generator at activation (AUTHENTICATION_METHOD_PIN_AND_TOTP). */
  totp?: boolean;
  /** The credential's assurance level; default the policy's default level. */
  assuranceLevel?: AssuranceLevel;
}

/** How a call ended: refused with a gRPC code and an Inkan reason, or succeeded. */
export type Outcome = { code: Code; reason: Reason; message: string } | "succeeded";

/** The outcome of `p`, never throwing for a refusal. */
export async function outcomeOf(p: Promise<unknown>): Promise<Outcome> {
  try {
    await p;
    return "succeeded";
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, reason: inkanErrorReason(e), message: e.rawMessage };
  }
}

/** The first message of a server stream (starts it; a refusal surfaces here). */
export async function firstOf<T>(stream: AsyncIterable<T>): Promise<T> {
  for await (const m of stream) return m;
  throw new Error("the stream ended without a message");
}

export interface Transaction {
  ch: SadChallenge;
  hashes: Uint8Array[];
  messages: Buffer[];
}

export class Session {
  readonly sca: Client<typeof SignatureActivationService>;
  /** A second SCA's client, when the target allows one. */
  readonly otherSca: Client<typeof SignatureActivationService> | undefined;
  /** Issue 19: an SCA whose scope does not cover the suite's signers, when the target gives one. */
  readonly otherScopeSca: Client<typeof SignatureActivationService> | undefined;
  readonly device: Client<typeof SignerService>;
  readonly ra: Client<typeof RegistrationService>;
  private shared: Promise<TestSigner> | undefined;
  private issuer: Promise<Issuer> | undefined;
  private getInfo: Promise<GetInfoResponse> | undefined;

  constructor(
    readonly protocol: Protocol,
    readonly target: TargetOptions,
    readonly identities: Identities,
  ) {
    const tls = (pem: { cert: string; key: string }) => ({ ca: target.ca, ...pem });
    this.sca = createClient(SignatureActivationService, transportFor(protocol, target.url, tls(target.sca)));
    this.otherSca = identities.secondSca ? createClient(SignatureActivationService, transportFor(protocol, target.url, tls(identities.secondSca))) : undefined;
    this.otherScopeSca = target.otherScopeSca ? createClient(SignatureActivationService, transportFor(protocol, target.url, tls(target.otherScopeSca))) : undefined;
    this.device = createClient(SignerService, transportFor(protocol, target.url, tls(target.frontEnd ?? target.sca)));
    this.ra = createClient(RegistrationService, privilegedTransport(protocol, target, identities.operator));
  }

  /** A client for the admin API as `who` over this session's protocol. */
  adminClient<S extends Parameters<typeof createClient>[0]>(service: S, who: Identities["operator"]): Client<S> {
    return createClient(service, privilegedTransport(this.protocol, this.target, who));
  }

  /** The target's GetInfo (what it enables: authentication methods, assurance levels). */
  info(): Promise<GetInfoResponse> {
    this.getInfo ??= this.sca.getInfo({});
    return this.getInfo;
  }

  /** The signer most cases share (cases that may lock or suspend it take their own). */
  sharedSigner(): Promise<TestSigner> {
    this.shared ??= this.newSigner();
    return this.shared;
  }

  /**
   * Enrolls a signer through the admin API, activates it from its "device" with the SDK (device key
   * + PIN), generates its key, certifies exactly that key with the signer issuing CA and imports
   * the certificate: an ACTIVE signer with an ACTIVE credential.
   */
  async newSigner(o: SignerOptions = {}): Promise<TestSigner> {
    const tag = randomUUID().slice(0, 8);
    const { signer } = await this.ra.enrollSigner({
      identity: { kind: SignerKind.NATURAL_PERSON, legalName: `Conformance Signer ${tag}`, displayName: `Conformance ${tag}`, email: `conformance-${tag}@example.invalid`, country: "JP" },
      proofing: { method: IdentityProofingMethod.IN_PERSON, evidenceReference: `conformance-${tag}`, proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) },
    });
    const signerId = signer!.signerId;
    const { activationCode } = await this.ra.issueActivationCode({ signerId });
    const ch = await this.device.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
    const deviceKey = await createDeviceKey();
    const { request, responseKey } = await buildActivationRequest({
      signerId, activationCode: activationCode!.code, pin: conformancePin, deviceKey, enrollTotp: o.totp === true,
      challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience,
    });
    const activated = await this.device.activate(request);
    const totp = o.totp ? parseOtpauth(await openTotpEnrollment(activated.totpEnrollment, responseKey!)) : undefined;
    const { credential: generated } = await this.ra.generateKey({
      signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "conformance", assuranceLevel: o.assuranceLevel ?? AssuranceLevel.ASSURANCE_LEVEL_UNSPECIFIED,
    });
    this.issuer ??= loadIssuer(this.target.signerIssuingCa);
    const certificate = await issueSignerCertificate(await this.issuer, generated!.publicKeySpki, `Conformance Signer ${tag}`);
    const { credential } = await this.ra.importCertificate({ credentialId: generated!.credentialId, certificateChain: [certificate] });
    return { signerId, credentialId: credential!.credentialId, deviceKey, spki: credential!.publicKeySpki, fingerprint: credential!.publicKeyFingerprint, ...(totp ? { totp } : {}) };
  }

  /** `n` fresh documents and their SHA-256 (the DTBS/R). */
  documents(n: number): { messages: Buffer[]; hashes: Uint8Array[] } {
    const messages = Array.from({ length: n }, () => randomBytes(24));
    return { messages, hashes: messages.map((m) => new Uint8Array(createHash("sha256").update(m).digest())) };
  }

  /** BeginTransaction with the whole list inline (sealed at once). */
  async begin(s: TestSigner, n = 2, sca = this.sca): Promise<Transaction> {
    const { messages, hashes } = this.documents(n);
    const res = await sca.beginTransaction({
      credentialId: s.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: n, hashes, description: "Inkan conformance suite",
    });
    return { ch: res.sadChallenge!, hashes, messages };
  }

  /** The signer's device: R.SAD for `ch` built with the SDK, any input overridden. */
  rSad(s: TestSigner, ch: SadChallenge, over: Partial<RSadInput> = {}): Promise<string> {
    return buildRSad({
      deviceKey: s.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description,
      pin: conformancePin, samKey: ch.encryptionKey!, ...over,
    });
  }

  /** The SCA's side of the methods without a device key: R.SAD {claims, factors} for `ch`, any input overridden. */
  claimsRSad(ch: SadChallenge, factors: ClaimsRSadFactors, over: Partial<ClaimsRSadInput> = {}): Promise<string> {
    return buildClaimsRSad({
      signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge,
      dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, samKey: ch.encryptionKey!, factors, ...over,
    });
  }

  /** begin + R.SAD + Authorize: the transaction and its first SAD token. */
  async authorized(s: TestSigner, n = 2): Promise<Transaction & { token: string }> {
    const tx = await this.begin(s, n);
    const { sadToken } = await this.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await this.rSad(s, tx.ch) });
    return { ...tx, token: sadToken };
  }

  signHash(token: string, hashes: Uint8Array[], sca = this.sca) {
    return sca.signHash({ authorization: { case: "sadToken", value: token }, hashes });
  }

  signStream(token: string, startIndex = 0, sca = this.sca, signal?: AbortSignal): AsyncIterable<SignStreamResponse> {
    return sca.signStream({ sadToken: token, startIndex }, signal ? { signal } : {});
  }

  /**
   * How many signatures the transaction produced: ends it with CancelTransaction (as its owner)
   * and reads signatures_created. The "nothing was signed" check of every attack.
   */
  async signaturesCreated(transactionId: string): Promise<number> {
    return (await this.sca.cancelTransaction({ transactionId })).signaturesCreated;
  }

  /** The signature verifies over `message` with the signer's credential key. */
  verifies(s: TestSigner, message: Buffer, signature: Uint8Array): boolean {
    return verifySignature("sha256", message, createPublicKey({ key: Buffer.from(s.spki), format: "der", type: "spki" }), signature);
  }
}
