/** The portal's text in Japanese and English; the key is the element's data-i18n. */
export type Lang = "ja" | "en";

const text = {
  brand: ["Inkan 署名ポータル", "Inkan signer portal"],
  tabRequests: ["署名依頼", "Requests"],
  tabManage: ["管理", "Manage"],
  loading: ["読み込み中…", "Loading…"],
  activateTitle: ["この端末を登録する", "Register this device"],
  activateIntro: ["登録担当者から届いた署名者IDとアクティベーションコードを入力し、PINを決めてください。", "Enter the signer ID and the activation code you received from the registration officer, and choose a PIN."],
  notRegistered: ["この端末は登録されていないため、署名依頼は表示できません。", "This device is not registered, so no signing request can be shown on it."],
  signerId: ["署名者ID", "Signer ID"],
  activationCode: ["アクティベーションコード", "Activation code"],
  newPin: ["新しいPIN（6文字以上）", "New PIN (6 characters or more)"],
  confirmPin: ["PIN（確認）", "PIN (again)"],
  activateButton: ["登録する", "Register"],
  registeredTitle: ["登録しました", "Registered"],
  deviceKey: ["端末の鍵（SHA-256 拇印）", "Device key (SHA-256 thumbprint)"],
  keyKind: ["鍵の種類", "Key type"],
  keyKindValue: ["P-256（ES256）、この端末のブラウザー内に保存・取り出し不可", "P-256 (ES256), kept in this browser, not extractable"],
  sam: ["署名サービス（SAM）", "Signing service (SAM)"],
  registeredAt: ["登録日時", "Registered at"],
  toRequests: ["署名依頼へ", "Go to requests"],
  requestsTitle: ["署名依頼", "Signing requests"],
  requestsEmpty: ["待っている署名依頼はありません。", "No signing request is waiting for you."],
  refresh: ["更新", "Refresh"],
  requestTitle: ["署名依頼の内容", "Signing request"],
  requestMissing: ["この依頼は見つからないか、この端末の署名者宛てではありません。", "This request does not exist or is not for the signer of this device."],
  challengeVerified: ["署名サービスの署名を確認しました：表示内容は署名サービスが発行したものです。", "Checked: the signing service signed what is shown here."],
  description: ["内容", "Description"],
  documents: ["文書数", "Documents"],
  credential: ["署名鍵（クレデンシャル）", "Credential"],
  sca: ["依頼元アプリ（SCA）", "Requested by (SCA)"],
  expires: ["有効期限", "Expires"],
  fingerprint: ["ハッシュ一覧の指紋", "Fingerprint of the hash list"],
  pin: ["PIN", "PIN"],
  approve: ["承認して署名する", "Approve and sign"],
  decline: ["拒否する", "Decline"],
  progress: ["署名の進捗", "Signing progress"],
  back: ["署名依頼の一覧へ", "Back to the requests"],
  manageTitle: ["管理", "Manage"],
  changePinTitle: ["PINの変更", "Change the PIN"],
  oldPin: ["現在のPIN", "Current PIN"],
  changePinButton: ["PINを変更する", "Change the PIN"],
  suspendTitle: ["署名鍵の一時停止", "Suspend a credential"],
  suspendIntro: ["端末やPINが他人に知られたおそれがあるときは、署名鍵を一時停止できます。再開は登録担当者が行います。", "If your device or PIN may be in someone else's hands, suspend the credential. A registration officer resumes it."],
  suspendButton: ["一時停止を依頼する", "Request suspension"],
  historyTitle: ["最近の承認", "Recent authorizations"],
  historyLoad: ["表示する", "Show"],
  historyCaption: ["署名サービスが検証した承認（新しい順）", "Authorizations the signing service verified (newest first)"],
  when: ["日時", "When"],
  result: ["結果", "Result"],
  // Messages set from code.
  pinsDiffer: ["2つのPINが一致しません。", "The two PINs differ."],
  fillAll: ["すべての項目を入力してください。", "Fill in every field."],
  working: ["処理中…", "Working…"],
  activated: ["この端末を登録しました。", "This device is registered."],
  waitingSca: ["承認を送りました。署名サービスの確認を待っています…", "Approval sent. Waiting for the signing service…"],
  authorized: ["承認されました。", "Authorized."],
  signedOf: ["{n} 件中 {k} 件に署名しました。", "Signed {k} of {n}."],
  allSigned: ["すべての文書に署名しました。", "Every document is signed."],
  wrongPin: ["PINが違うか、承認を確認できませんでした。もう一度入力してください。", "Wrong PIN, or the approval could not be verified. Enter it again."],
  locked: ["失敗が多すぎるため署名鍵がロックされました。登録担当者に連絡してください。", "Too many failed attempts: the credential is locked. Contact your registration officer."],
  attemptsSpent: ["この依頼ではPINの入力回数の上限に達しました。依頼元アプリにもう一度依頼してもらってください。", "Too many wrong PINs for this request: ask the requesting app to send it again."],
  failed: ["署名サービスが承認を受け付けませんでした（{r}）。", "The signing service refused the approval ({r})."],
  declined: ["拒否しました。依頼元アプリに通知しました。", "Declined. The requesting app has been told."],
  cancelled: ["依頼元アプリがこの依頼を取り消しました。", "The requesting app cancelled this request."],
  expired: ["この依頼は期限切れです。", "This request has expired."],
  returning: ["{sca} に戻ります…", "Returning to {sca}…"],
  notFromSam: ["この依頼は署名サービスの署名を確認できません。承認しないでください。", "This request is not signed by your signing service. Do not approve it."],
  pinChanged: ["PINを変更しました。", "The PIN is changed."],
  suspended: ["署名鍵 {c} を一時停止しました。", "Credential {c} is suspended."],
  confirmSuspend: ["署名鍵 {c} を一時停止しますか？", "Suspend credential {c}?"],
  noCredential: ["署名鍵がありません。", "No credential."],
  historyEmpty: ["承認の記録はありません。", "No authorization on record."],
  ok: ["承認", "authorized"],
  refused: ["拒否（{r}）", "refused ({r})"],
  error: ["エラー：{e}", "Error: {e}"],
  signInFailed: ["この端末の鍵を署名サービスで確認できませんでした（{e}）。", "The signing service could not confirm this device's key ({e})."],
  statusLabel: ["状態：", "State: "],
} as const satisfies Record<string, readonly [string, string]>;

export type TextKey = keyof typeof text;

let lang: Lang = "ja";

export function currentLang(): Lang {
  return lang;
}

/** The text for `key` in the current language, with {name} placeholders filled. */
export function t(key: TextKey, vars: Record<string, string | number> = {}): string {
  const s: string = text[key][lang === "ja" ? 0 : 1];
  return s.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? ""));
}

/** Switches the page's language: every [data-i18n] element, the html lang and the title. */
export function setLang(next: Lang): void {
  lang = next;
  document.documentElement.lang = next;
  document.title = t("brand");
  for (const el of document.querySelectorAll<HTMLElement>("[data-i18n]")) el.textContent = t(el.dataset.i18n as TextKey);
  document.getElementById("lang-ja")?.setAttribute("aria-pressed", String(next === "ja"));
  document.getElementById("lang-en")?.setAttribute("aria-pressed", String(next === "en"));
  try {
    localStorage.setItem("inkan-lang", next);
  } catch {
    // storage unavailable: the choice lasts for this page only
  }
}

export function initialLang(): Lang {
  try {
    const saved = localStorage.getItem("inkan-lang");
    if (saved === "ja" || saved === "en") return saved;
  } catch {
    // ignore
  }
  return navigator.language.toLowerCase().startsWith("ja") ? "ja" : "en";
}
