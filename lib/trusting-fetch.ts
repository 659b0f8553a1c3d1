/**
 * `fetch` that trusts only the given CA (a fleet's own CA, which no system store holds). Node's
 * fetch takes no CA option; undici's takes a dispatcher that does. undici is loaded on the first
 * request: commands that never speak HTTPS do not pay for it.
 */
export function fetchTrusting(caPem: string): typeof fetch {
  let loaded: Promise<{ call: typeof import('undici').fetch; dispatcher: import('undici').Agent }> | null =
    null;
  return (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    loaded ??= import('undici').then(({ Agent, fetch: undiciFetch }) => ({
      call: undiciFetch,
      dispatcher: new Agent({ connect: { ca: caPem } }),
    }));
    const { call, dispatcher } = await loaded;
    return call(input as Parameters<typeof call>[0], {
      ...(init as Parameters<typeof call>[1]),
      dispatcher,
    }) as unknown as Promise<Response>;
  }) as typeof fetch;
}

/** Node's error codes for a certificate the client does not trust (unknown CA, wrong name, expired). */
export const CERTIFICATE_REFUSED = /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME|DEPTH_ZERO|ERR_TLS/;
