/**
 * A signer with a device activated through the real portal page (issue 15), for the browser tests:
 * enrolled by the registration operator, activated in a fresh browser profile (device key in its
 * IndexedDB, the PIN chosen on the page), with one certified ACTIVE P-256 credential.
 */
import { createClient } from "@connectrpc/connect";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { Browser } from "playwright-core";
import type { PrivilegedPerson, TestServer } from "../../../server/src/testing/harness.js";
import { issueSignerCertificate, signerIssuingCa } from "../../../server/src/testing/signer-certificates.js";
import { enrolledSigner } from "../../../server/src/testing/signers.js";
import { newDevice, screenshot } from "./browser.js";

/** A credential for the signer, certified, ACTIVE (as the registration operator does it). */
export async function certifiedCredential(t: TestServer, operator: PrivilegedPerson, signerId: string): Promise<{ credentialId: string; certificate: Uint8Array }> {
  const ra = createClient(RegistrationService, t.as(operator));
  const { credential } = await ra.generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "" });
  const certificate = await issueSignerCertificate(await signerIssuingCa(t), credential!.publicKeySpki);
  await ra.importCertificate({ credentialId: credential!.credentialId, certificateChain: [certificate] });
  return { credentialId: credential!.credentialId, certificate };
}

/** Activates a freshly enrolled signer on a new browser profile through the page (screenshot `name` unless empty). */
export async function activatedDevice(o: { browser: Browser; t: TestServer; operator: PrivilegedPerson; gatewayUrl: string; pin: string; name: string }) {
  const device = await newDevice(o.browser);
  const { signerId, code } = await enrolledSigner(o.t, o.operator);
  const { page } = device;
  await page.goto(o.gatewayUrl);
  await page.waitForSelector("body[data-view=activate]");
  await page.fill("#activate-signer", signerId);
  await page.fill("#activate-code", code);
  await page.fill("#activate-pin", o.pin);
  await page.fill("#activate-pin2", o.pin);
  await page.click("#activate-form button[type=submit]");
  await page.waitForSelector("body[data-view=registered]");
  const { credentialId, certificate } = await certifiedCredential(o.t, o.operator, signerId);
  if (o.name) await screenshot(page, o.name);
  return { ...device, signerId, credentialId, certificate };
}
