/** Where agents reach the broker: configured, or the host they reached the API by plus the MQTT port. */
export class MqttEndpoint {
  constructor(
    private readonly publicUrl: string | null,
    private readonly port: number,
  ) {}

  urlFor(requestHost: string | undefined): string {
    if (this.publicUrl) return this.publicUrl;
    const hostname = requestHost ? new URL(`http://${requestHost}`).hostname : 'localhost';
    return `mqtt://${hostname.includes(':') ? `[${hostname}]` : hostname}:${this.port}`;
  }
}

export const MQTT_ENDPOINT = Symbol('MQTT_ENDPOINT');
