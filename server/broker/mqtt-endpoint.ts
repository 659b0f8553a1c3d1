import { urlHostOf } from '../common/request-host.ts';

/**
 * Where agents reach the broker: configured, or the host they reached the API by with the
 * broker's port. An agent that came over HTTPS is sent to MQTT over TLS (when the broker has it):
 * its secret must not then travel in clear.
 */
export class MqttEndpoint {
  constructor(
    private readonly publicUrl: string | null,
    private readonly ports: { plain: number; tls: number | null },
  ) {}

  urlFor(requestHost: string | undefined, overTls = false): string {
    if (this.publicUrl) return this.publicUrl;
    const host = urlHostOf(requestHost, 'localhost');
    if (overTls && this.ports.tls !== null) return `mqtts://${host}:${this.ports.tls}`;
    return `mqtt://${host}:${this.ports.plain}`;
  }
}

export const MQTT_ENDPOINT = Symbol('MQTT_ENDPOINT');
