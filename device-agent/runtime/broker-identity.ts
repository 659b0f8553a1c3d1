/**
 * How the agent tells Boardfleet's broker from another one listening where it looked (a system
 * Mosquitto on 1883, say). Boardfleet's broker knows the device's credentials, grants its
 * subscriptions, and holds the server's retained hello; a broker that fails any of these gets one
 * line naming its URL and what is wrong, rather than a "connected" for a device that stays offline.
 */

const ADVICE = "pass --mqtt with the URL of the Boardfleet server's broker (its BOARDFLEET_MQTT_PORT)";

/** The broker is not Boardfleet's, or does not take this device: logged as an error, then retried. */
export class BrokerIdentityError extends Error {}

export function noServerHello(url: string, seconds: number): BrokerIdentityError {
  return new BrokerIdentityError(
    `${url} is not Boardfleet's broker: no server hello within ${seconds} s; ${ADVICE}`,
  );
}

export function refusedSubscriptions(url: string, topics: string[]): BrokerIdentityError {
  return new BrokerIdentityError(
    `${url} is not Boardfleet's broker: it refused the subscription to ${topics.join(', ')}; ${ADVICE}`,
  );
}

/** CONNACK return codes 4 (bad username or password) and 5 (not authorized). */
const REFUSED_CREDENTIALS = new Set([4, 5]);

/** The broker refused the device's credentials: it may not know them yet (a fleet that moved). */
export function refusesCredentials(error: Error): boolean {
  const code = (error as Error & { code?: unknown }).code;
  return typeof code === 'number' && REFUSED_CREDENTIALS.has(code);
}

/**
 * A CONNACK refusing the device's credentials, named with the broker's URL; the error kept as it
 * is otherwise. Boardfleet's broker refuses a wrong or revoked secret the same way another broker
 * refuses a stranger, so the line names both.
 */
export function explainConnectError(url: string, error: Error): Error {
  if (!refusesCredentials(error)) return error;
  return new BrokerIdentityError(
    `${error.message} by ${url}: the device's secret is wrong or revoked, or this is not Boardfleet's broker (${ADVICE})`,
  );
}
