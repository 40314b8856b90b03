/**
 * Issue 17.6: how many calls this node runs at once, in all and per client certificate. A call is
 * admitted before its request is read, so a refused call costs nothing but its answer; its slot is
 * released when its response ends (or its stream is reset).
 */
export class CallAdmission {
  private inProgress = 0;
  private peak = 0;
  private refused = 0;
  private readonly perClient = new Map<string, number>();

  constructor(private readonly limits: { maxConcurrentCalls: number; maxConcurrentCallsPerClient: number }) {}

  /**
   * Takes a slot for a call of `client` (a certificate fingerprint; "" when none was accepted):
   * the function that gives it back (call it once), or undefined when a limit is reached.
   */
  admit(client: string): (() => void) | undefined {
    const mine = this.perClient.get(client) ?? 0;
    if (this.inProgress >= this.limits.maxConcurrentCalls || mine >= this.limits.maxConcurrentCallsPerClient) {
      this.refused++;
      return undefined;
    }
    this.inProgress++;
    this.peak = Math.max(this.peak, this.inProgress);
    this.perClient.set(client, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inProgress--;
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left === 0) this.perClient.delete(client);
      else this.perClient.set(client, left);
    };
  }

  stats(): { callsInProgress: number; peakCallsInProgress: number; refusedCalls: number } {
    return { callsInProgress: this.inProgress, peakCallsInProgress: this.peak, refusedCalls: this.refused };
  }
}
