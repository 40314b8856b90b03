/**
 * The SCA's side of the gateway's request API, for an SCA written in TypeScript (the example SCA
 * and the tests use it): post the SadChallenge, give the signer the request URL, wait for the
 * signer's R.SAD, relay it to the SAM with Authorize, and tell the gateway the SAM's verdict.
 */
import { request } from "node:https";
import { toJson } from "@bufbuild/protobuf";
import { InkanError, Reason, type SigningTransaction } from "@inkan/sdk";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";

export interface GatewayRelayOptions {
  /** The gateway's URL, e.g. https://localhost:8444. */
  baseUrl: string;
  /** The CA of the gateway's server certificate, and the SCA's client certificate and key (PEM). */
  tls: { ca: string; cert: string; key: string };
}

/** Thrown when the signer declined, the SCA cancelled, or the request expired. */
export class SignerDidNotApprove extends Error {
  constructor(readonly state: string) {
    super(`the signer did not approve (${state})`);
    this.name = "SignerDidNotApprove";
  }
}

type Update = { state: "pending" | "declined" | "cancelled" | "expired" | "failed" | "authorized"; rSad?: string };

export class GatewayRelay {
  constructor(private readonly o: GatewayRelayOptions) {}

  /** Posts the transaction's SadChallenge; the URL to send or show the signer. */
  async post(tx: Pick<SigningTransaction, "challenge">): Promise<{ requestId: string; requestUrl: string }> {
    return (await this.call("POST", "/api/sca/requests", { challenge: toJson(SadChallengeSchema, tx.challenge) })) as { requestId: string; requestUrl: string };
  }

  /**
   * Authorizes `tx` through the gateway: posts it, calls `onRequestUrl`, waits for the signer's
   * R.SAD and relays it to the SAM. A wrong PIN is reported to the gateway and the signer may try
   * again; any other refusal ends it (thrown). Resolves when the transaction is AUTHORIZED.
   */
  async authorize(tx: SigningTransaction, onRequestUrl: (url: string, requestId: string) => void | Promise<void>): Promise<string> {
    const { requestId, requestUrl } = await this.post(tx);
    await onRequestUrl(requestUrl, requestId);
    let refused: unknown;
    for (;;) {
      const update = await this.next(requestId);
      if (update.state === "pending") continue;
      // The SAM's last refusal ended it (the transaction's attempts are spent): that refusal is the answer.
      if (update.state === "failed" && refused) throw refused;
      if (update.state !== "authorized" && !update.rSad) throw new SignerDidNotApprove(update.state);
      try {
        await tx.authorize(update.rSad!);
      } catch (err) {
        const reason = err instanceof InkanError ? `REASON_${Reason[err.reason]}` : "REASON_UNSPECIFIED";
        await this.call("POST", `/api/sca/requests/${requestId}/outcome`, { authorized: false, reason });
        if (reason === "REASON_AUTHENTICATION_FAILED") {
          refused = err;
          continue; // the signer may enter the PIN again, while the transaction has attempts left
        }
        throw err;
      }
      await this.call("POST", `/api/sca/requests/${requestId}/outcome`, { authorized: true });
      return requestId;
    }
  }

  /**
   * For an SCA whose own code calls Authorize (e.g. through a callback that must return an
   * R.SAD): posts the challenge, calls `onRequestUrl`, and resolves with the signer's R.SAD. Then
   * report `progress` as the signatures arrive (the first report also says the SAM accepted it),
   * or `refused` when Authorize failed.
   */
  async rSadFor(challenge: SigningTransaction["challenge"], onRequestUrl: (url: string, requestId: string) => void | Promise<void>): Promise<{ requestId: string; rSad: string }> {
    const { requestId, requestUrl } = await this.post({ challenge });
    await onRequestUrl(requestUrl, requestId);
    for (;;) {
      const update = await this.next(requestId);
      if (update.state === "pending") continue;
      if (!update.rSad) throw new SignerDidNotApprove(update.state);
      return { requestId, rSad: update.rSad };
    }
  }

  /**
   * Tells the gateway (and so the signer's page) that the SAM refused the R.SAD (`err` as
   * Authorize threw it) and that this SCA gives up: the request ends, even after a wrong PIN.
   */
  async refused(requestId: string, err: unknown): Promise<void> {
    const reason = err instanceof InkanError ? `REASON_${Reason[err.reason]}` : "REASON_UNSPECIFIED";
    await this.call("POST", `/api/sca/requests/${requestId}/outcome`, { authorized: false, reason, final: true });
  }

  /** Tells the signer's page how far the signing got. */
  async progress(requestId: string, signed: number): Promise<void> {
    await this.call("POST", `/api/sca/requests/${requestId}/progress`, { signed });
  }

  async cancel(requestId: string): Promise<void> {
    await this.call("DELETE", `/api/sca/requests/${requestId}`);
  }

  /** One long poll (at most 25 s); a dropped connection (a gateway restart) is retried. */
  async next(requestId: string): Promise<Update> {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.call("GET", `/api/sca/requests/${requestId}?wait=25`)) as Update;
      } catch (err) {
        if (!(err instanceof Error && "code" in err) || attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private call(method: string, path: string, body?: unknown): Promise<unknown> {
    const data = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((done, fail) => {
      const req = request(new URL(path, this.o.baseUrl), { method, ...this.o.tls, headers: data ? { "content-type": "application/json" } : {} }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", fail);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if ((res.statusCode ?? 500) >= 300) return fail(new Error(`gateway ${method} ${path}: ${res.statusCode} ${text}`));
          done(text ? JSON.parse(text) : undefined);
        });
      });
      req.on("error", fail);
      req.end(data);
    });
  }
}
