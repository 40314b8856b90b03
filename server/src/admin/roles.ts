import type { PrivilegedRole } from "../store/port.js";

/**
 * Least privilege (R-3.1.2.1, R-3.2.2.1, T-2.2.2.1, T-2.2.2.2): the roles that may call each
 * admin RPC, by full RPC path (one role, except the approval RPCs of dual control). An RPC missing here is refused for every role (fail closed).
 * CreateRequestNonce is open to every role: it is authenticated by the certificate alone.
 */
const SO = "SECURITY_OFFICER";
const RO = "REGISTRATION_OPERATOR";
const AU = "AUDITOR";

const byService: Record<string, Record<string, readonly PrivilegedRole[]>> = {
  "inkan.admin.v1.PrivilegedSessionService": { CreateRequestNonce: [SO, RO, AU] },
  "inkan.admin.v1.RegistrationService": {
    EnrollSigner: [RO], GetSigner: [RO], ListSigners: [RO], UpdateSigner: [RO], DisableSigner: [RO],
    EnableSigner: [RO], IssueActivationCode: [RO], ResetFactors: [RO], RevokeDevice: [RO], ResetLockout: [RO],
    GenerateKey: [RO], GetCredential: [RO], ListCredentials: [RO], PrepareCsr: [RO], CreateCsr: [RO],
    ImportCertificate: [RO], GetKeyImportTransportKey: [RO], ImportKey: [RO], SuspendCredential: [RO],
    ResumeCredential: [RO],
    DestroyCredential: [SO], // key destruction is the security officer's, under dual control
  },
  "inkan.admin.v1.PrivilegedUserService": {
    CreatePrivilegedUser: [SO], GetPrivilegedUser: [SO], ListPrivilegedUsers: [SO], UpdatePrivilegedUser: [SO],
    RemovePrivilegedUser: [SO], AddUserKey: [SO], RevokeUserKey: [SO],
    // T-2.2.2.1: a registration operator approves another's re-binding of a signer; which pending
    // requests each role may see and decide is narrowed per method (admin/dual-control.ts).
    ListPendingApprovals: [SO, RO], GetPendingApproval: [SO, RO], ApprovePendingRequest: [SO, RO], RejectPendingRequest: [SO, RO],
  },
  "inkan.admin.v1.PolicyService": { GetSecurityPolicy: [SO], UpdateSecurityPolicy: [SO], GetRestoreStatus: [SO], AcknowledgeRestore: [SO] },
  "inkan.admin.v1.AuditService": { ListAuditRecords: [AU], ListAuditKeys: [AU], VerifyAuditLog: [AU], ExportAuditLog: [AU] },
};

/** The roles that may call `method` ("/package.Service/Method"); empty when none may. */
export function rolesFor(method: string): readonly PrivilegedRole[] {
  const [, service = "", name = ""] = method.split("/");
  return byService[service]?.[name] ?? [];
}

/** The only admin RPC that needs no per-request signature. */
export const nonceMethod = "/inkan.admin.v1.PrivilegedSessionService/CreateRequestNonce";
