/** Where the server's own MQTT session connects, and as whom. */
export interface ServerSessionEndpoint {
  url: string;
  username: string;
  password: string;
  /**
   * Set: the session subscribes to the devices' topics as this shared-subscription group
   * (`$share/GROUP/…`), so that server replicas split the devices' messages between them.
   */
  sharedGroup: string | null;
}

/**
 * What the server needs of the MQTT broker, embedded (Aedes, authenticating against the database)
 * or external (Mosquitto, whose dynamic-security plugin holds a client per device). Device
 * credentials go to the broker at the moments the server knows them in clear: when a device is
 * created or provisioned, and when its secret changes.
 */
export interface DeviceBroker {
  /** Resolves once devices can connect (embedded) or device access can be managed (external). */
  start(): Promise<unknown>;
  /** Known once started. */
  serverSession(): ServerSessionEndpoint;
  /** The port agents reach the broker on, for the MQTT URL handed to them; known once started. */
  devicePort(): number;
  /** The port agents reach the broker over TLS on, null when it has none the server knows of. */
  deviceTlsPort(): number | null;
  /** A new device may log in with this secret from now on. */
  registerDevice(deviceId: string, secret: string): Promise<void>;
  /**
   * The broker knows this device (whose secret was just proven over HTTP): registers it with this
   * secret when the broker has no credential for it, and leaves an existing one as it is. True
   * when it registered the device: one registered before the switch to this broker.
   */
  ensureDevice(deviceId: string, secret: string): Promise<boolean>;
  /** The device's secret is now this one (the old one is refused); registers it if the broker had none. */
  changeDeviceSecret(deviceId: string, secret: string): Promise<void>;
  /** Drops the device's live session; it cannot log in again (its secret is gone). */
  revokeDevice(deviceId: string): Promise<void>;
  /** Ends everything the broker keeps for a deleted device: session, will, retained messages. */
  forgetDevice(deviceId: string): Promise<void>;
  /** First step of a graceful stop, before the server's own session closes. */
  disconnectDevices(): Promise<void>;
  stop(): Promise<void>;
}

export const DEVICE_BROKER = Symbol('DEVICE_BROKER');
