import { describe, expect, it } from "vitest";
import { InkanError } from "../../errors.js";
import { formatPkcs11Uri, parsePkcs11Uri, pinSourcePath } from "./uri.js";

describe("RFC 7512 PKCS#11 URIs", () => {
  it("formats a key URI with a percent-encoded id", () => {
    const id = Uint8Array.from([0x0a, 0x10, 0xff, 0x41]);
    expect(formatPkcs11Uri({ token: "inkan", id, type: "private" })).toBe("pkcs11:token=inkan;id=%0a%10%ff%41;type=private");
  });

  it("round-trips every attribute, escaping reserved and non-ASCII characters", () => {
    const uri = {
      token: "my token;1/ü",
      manufacturer: "SoftHSM project",
      serial: "a1b2",
      model: "SoftHSM v2",
      object: "key=1&x",
      id: Uint8Array.from([0, 1, 2, 255]),
      type: "secret-key" as const,
      modulePath: "/usr/lib/softhsm/libsofthsm2.so",
      pinSource: "/var/lib/inkan/hsm/user-pin",
    };
    const text = formatPkcs11Uri(uri);
    expect(text).toContain("?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/var/lib/inkan/hsm/user-pin");
    expect(text).toContain("token=my%20token%3b1%2f%c3%bc");
    expect(parsePkcs11Uri(text)).toEqual(uri);
  });

  it("parses RFC 7512 examples", () => {
    expect(parsePkcs11Uri("pkcs11:object=my-pubkey;type=public")).toEqual({ object: "my-pubkey", type: "public" });
    expect(parsePkcs11Uri("pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=")).toMatchObject({
      token: "The Software PKCS#11 Softtoken",
      manufacturer: "Snake Oil, Inc.",
      object: "my-certificate",
      type: "cert",
      id: Uint8Array.from([0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91]),
      serial: "",
    });
    expect(parsePkcs11Uri("pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token;library-version=1")).toEqual({});
    expect(parsePkcs11Uri("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert")).toMatchObject({ token: "A name with a substring %;" });
    expect(parsePkcs11Uri("pkcs11:")).toEqual({});
    expect(parsePkcs11Uri("PKCS11:token=x?module-name=softhsm2&x-vendor=1")).toEqual({ token: "x" });
  });

  it("refuses a PIN inside the URI without repeating it", () => {
    try {
      parsePkcs11Uri("pkcs11:token=inkan?pin-value=hunter2");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InkanError);
      expect((err as InkanError).code).toBe("INVALID_REQUEST");
      expect((err as Error).message).not.toContain("hunter2");
    }
  });

  it("refuses malformed URIs", () => {
    for (const bad of [
      "pkcs12:token=x",
      "pkcs11:token=x;token=y",
      "pkcs11:unknown=1",
      "pkcs11:type=key",
      "pkcs11:id=%zz",
      "pkcs11:id=%0",
      "pkcs11:token",
      "pkcs11:=x",
      "pkcs11:token=a b",
      "pkcs11:object=%ff%fe",
      "pkcs11:token=x?pin-source=a&pin-source=b",
    ]) {
      expect(() => parsePkcs11Uri(bad), bad).toThrow(InkanError);
    }
  });

  it("reads pin-source as a file path", () => {
    expect(pinSourcePath("file:///etc/pin")).toBe("/etc/pin");
    expect(pinSourcePath("file:/etc/pin")).toBe("/etc/pin");
    expect(pinSourcePath("/etc/pin")).toBe("/etc/pin");
    expect(() => pinSourcePath("https://example.com/pin")).toThrow(InkanError);
    expect(() => pinSourcePath("file:relative")).toThrow(InkanError);
  });
});
