/**
 * The host name a request reached this server by (its Host header, port dropped), ready to put in
 * a URL back to it: an IPv6 address in brackets. A missing or malformed header gives `fallback`.
 */
export function urlHostOf(requestHost: string | undefined, fallback: string): string {
  let hostname = fallback;
  if (requestHost) {
    try {
      hostname = new URL(`http://${requestHost}`).hostname;
    } catch {
      // A Host header no URL can hold is the client's mistake, not a reason to fail its request.
    }
  }
  return hostname.includes(':') && !hostname.startsWith('[') ? `[${hostname}]` : hostname;
}
