import { describe, expect, it } from "vitest";
import { SharedClock } from "./clock.js";
import { InkanError } from "./errors.js";

/** A shared clock over fakes: the database's time, this process's monotonic and wall clocks. */
function fixture(o: { dbMs: number; wallMs: number; tripMs?: number }) {
  const t = { mono: 1_000, wall: o.wallMs, db: o.dbMs, trip: o.tripMs ?? 2, fail: false };
  const clock = new SharedClock({
    read: async () => {
      if (t.fail) throw new Error("connection refused");
      t.mono += t.trip / 2;
      t.wall += t.trip / 2;
      const at = new Date(t.db + t.trip / 2);
      t.mono += t.trip / 2;
      t.wall += t.trip / 2;
      t.db += t.trip;
      return at;
    },
    refreshMs: 1_000,
    monotonic: () => t.mono,
    wallClock: () => t.wall,
  });
  const advance = (ms: number, wallStepMs = 0) => {
    t.mono += ms;
    t.db += ms;
    t.wall += ms + wallStepMs;
  };
  return { t, clock, advance };
}

const storeFailure = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return err instanceof InkanError ? err.code : String(err);
  }
  return "no error";
};

describe("SharedClock (issue 21: one time source for the nodes)", () => {
  it("reads the database's time, carried forward on the monotonic clock: a step of this node's wall clock changes nothing", async () => {
    const { clock, advance } = fixture({ dbMs: Date.parse("2026-12-01T10:00:00Z"), wallMs: Date.parse("2026-12-01T10:00:01Z") });
    await clock.refresh();
    expect(Math.abs(clock.skewMs - -1_000)).toBeLessThanOrEqual(1);
    advance(500, 3_600_000); // the node's wall clock jumps an hour
    expect(clock.now().toISOString()).toBe("2026-12-01T10:00:00.502Z");
  });

  it("fails closed (STORE_FAILURE) before the first sample, once the last sample is older than maxAgeMs, and when the node's clock is off beyond the bound", async () => {
    const { t, clock, advance } = fixture({ dbMs: 10_000_000, wallMs: 10_000_000 });
    expect(storeFailure(() => clock.now())).toBe("STORE_FAILURE");
    await clock.refresh();
    expect(storeFailure(() => clock.now())).toBe("no error");
    t.fail = true;
    await expect(clock.refresh()).rejects.toMatchObject({ code: "STORE_FAILURE" });
    advance(2_999);
    expect(storeFailure(() => clock.now())).toBe("no error"); // the last good sample is still fresh
    advance(2);
    expect(storeFailure(() => clock.now())).toBe("STORE_FAILURE");
    t.fail = false;
    await clock.refresh();
    expect(storeFailure(() => clock.now())).toBe("no error");
    t.wall += 2_500; // this node's clock now 2.5 s off the database's
    await clock.refresh();
    expect(storeFailure(() => clock.now())).toBe("STORE_FAILURE");
  });

  it("refuses a sample whose round trip is too long (its time is uncertain) and keeps the previous one", async () => {
    const { t, clock } = fixture({ dbMs: 50_000, wallMs: 50_000 });
    await clock.refresh();
    const before = clock.now().getTime();
    t.trip = 600;
    await expect(clock.refresh()).rejects.toMatchObject({ code: "STORE_FAILURE" });
    expect(clock.now().getTime()).toBeGreaterThanOrEqual(before);
  });

  it("start() throws when the time cannot be read (three attempts): the node does not serve without it", async () => {
    let reads = 0;
    const clock = new SharedClock({ read: () => (reads++, Promise.reject(new Error("down"))) });
    await expect(clock.start()).rejects.toMatchObject({ code: "STORE_FAILURE" });
    expect(reads).toBe(3);
  });

  it("start() takes a second sample when the first was slow (it opened the connection)", async () => {
    const { t, clock } = fixture({ dbMs: 70_000, wallMs: 70_000, tripMs: 800 });
    const read = clock.refresh.bind(clock);
    clock.refresh = async () => {
      try {
        await read();
      } finally {
        t.trip = 2;
      }
    };
    await clock.start();
    clock.stop();
    expect(storeFailure(() => clock.now())).toBe("no error");
  });
});
