/**
 * Follows MQTT framing over the bytes of one connection, to refuse a packet by the size its fixed
 * header announces, before any of its body is buffered. The MQTT parser (mqtt-packet) has no
 * limit: it keeps every byte until the announced remaining length has arrived, so one CONNECT
 * announcing 256 MB made the server buffer 256 MB before it even checked credentials.
 */
export class PacketSizeGuard {
  private state: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private bodyLeft = 0;

  /** `maxRemainingBytes`: the largest remaining length (variable header + payload) accepted. */
  constructor(private readonly maxRemainingBytes: number) {}

  /**
   * Reads the framing of the next chunk: the remaining length of the first packet announced over
   * the limit (Infinity for a length field longer than MQTT allows), or null when all is within it.
   */
  feed(chunk: Buffer): number | null {
    let at = 0;
    while (at < chunk.length) {
      if (this.state === 'type') {
        at++;
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
      } else if (this.state === 'length') {
        const byte = chunk[at++]!;
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        this.lengthBytes++;
        // Refused as soon as the announced size is known to be too large, before any body byte.
        if (this.length > this.maxRemainingBytes) return this.length;
        if (byte & 0x80) {
          if (this.lengthBytes === 4) return Number.POSITIVE_INFINITY;
          continue;
        }
        this.bodyLeft = this.length;
        this.state = this.bodyLeft > 0 ? 'body' : 'type';
      } else {
        const taken = Math.min(this.bodyLeft, chunk.length - at);
        at += taken;
        this.bodyLeft -= taken;
        if (this.bodyLeft === 0) this.state = 'type';
      }
    }
    return null;
  }
}
