/** How often a closed gate looks whether the backlog has shrunk enough to let publishes through. */
const RECHECK_MS = 5;

/**
 * Backpressure for device publishes. While the broker's backlog (messages routed but not yet taken
 * by the server's session) is at the limit, each device publish waits here before it is routed.
 * Aedes reads a device's socket again only once the packets it already read are handled, so a
 * waiting publish stops that socket being read, and TCP slows the device down: the backlog stays
 * bounded (the limit, plus at most one socket read per device waiting here) instead of growing
 * until the process runs out of memory or stack.
 */
export class PublishGate {
  private readonly waiting: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly limit: number,
    private readonly backlog: () => number,
    private readonly observe: {
      /** The gate closed: the backlog reached the limit. */
      closed(): void;
      /** Publishes now waiting. */
      held(count: number): void;
    },
  ) {}

  /** Calls `proceed` now, or once the backlog has fallen to half the limit (in arrival order). */
  admit(proceed: () => void): void {
    if (this.waiting.length === 0 && this.backlog() < this.limit) {
      proceed();
      return;
    }
    if (this.waiting.length === 0) this.observe.closed();
    this.waiting.push(proceed);
    this.observe.held(this.waiting.length);
    this.timer ??= setTimeout(() => this.release(), RECHECK_MS);
  }

  /** Lets every waiting publish through (the broker is stopping). */
  open(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const waiting = this.waiting.splice(0);
    this.observe.held(0);
    for (const proceed of waiting) proceed();
  }

  private release(): void {
    this.timer = null;
    // Half the limit, so the gate does not flap open and shut on every message.
    const room = Math.floor(this.limit / 2) - this.backlog();
    const released = this.waiting.splice(0, Math.max(0, room));
    this.observe.held(this.waiting.length);
    for (const proceed of released) proceed();
    if (this.waiting.length > 0) this.timer = setTimeout(() => this.release(), RECHECK_MS);
  }
}
