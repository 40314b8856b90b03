import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { KeyWrapScheme, type RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { KeyAlgorithm as DomainKeyAlgorithm } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { KeyImportTransportKeys } from "../keys/key-import-transport-key.js";
import type { KeyImport } from "../registration/key-import.js";
import { acting, credentialOut } from "./registration-service.js";

type Impl = Partial<ServiceImpl<typeof RegistrationService>>;

/**
 * RegistrationService's key import (registration.proto): GetKeyImportTransportKey and ImportKey.
 * Authentication, the role check, validation and the privileged-operation audit ran before these
 * handlers; map in, call the domain, map out.
 */
export function keyImportService(transportKeys: KeyImportTransportKeys, keyImport: KeyImport, clock: () => Date = () => new Date()): Impl {
  return {
    async getKeyImportTransportKey() {
      const key = await transportKeys.current(clock());
      return {
        transportKeyId: key.transportKeyId,
        publicKeyJwk: JSON.stringify(key.jwk),
        publicKeySpki: key.publicKeySpki,
        wrapScheme: KeyWrapScheme.RSA_OAEP_AES_KWP,
        expiresAt: timestampFromDate(key.expiresAt),
      };
    },
    async importKey(req, ctx) {
      const now = clock();
      if (req.wrapScheme !== KeyWrapScheme.RSA_OAEP_AES_KWP) throw new InkanError("INVALID_REQUEST", "wrap_scheme is not supported", { field: "wrap_scheme" });
      const name = KeyAlgorithm[req.keyAlgorithm];
      if (!name || name === "UNSPECIFIED") throw new InkanError("INVALID_REQUEST", "key_algorithm is required", { field: "key_algorithm" });
      const view = await keyImport.importKey({
        ...acting(ctx, now),
        signerId: req.signerId,
        transportKeyId: req.transportKeyId,
        encryptedKek: req.encryptedKek,
        wrappedPrivateKey: req.wrappedPrivateKey,
        algorithm: name as DomainKeyAlgorithm,
        publicKeySpki: req.publicKeySpki,
        assuranceLevel: req.assuranceLevel,
        label: req.label,
        certificateChain: req.certificateChain,
        signerConsent: req.signerConsent,
      });
      return { credential: credentialOut(view, now) };
    },
  };
}
