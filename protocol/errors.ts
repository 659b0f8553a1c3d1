/**
 * Every error code Boardfleet uses, with the HTTP status it deserves. The server's error filter
 * reads this table; the CLI, the agent and the builder use the same words. A code is stable:
 * scripts match on it and some travel over MQTT as failure reasons, so never rename one.
 *
 * The status says whose move it is: 4xx when the caller handed in something wrong (400), is not
 * who it claims (401/403), named what does not exist (404) or asked for what the current state
 * refuses (409), sent more than a limit takes (413) or tried too often (429); 502/503/504 when
 * something we depend on (a mirror, a registry, a board, a host tool) answered wrongly, is missing
 * or did not answer; 500 only for our own failures.
 */
export const ERROR_STATUS = {
  // The request, arguments, configuration or a file handed in cannot be used.
  'invalid-request': 400,
  'invalid-arguments': 400,
  'invalid-option': 400,
  'invalid-config': 400,
  'invalid-config-name': 400,
  'invalid-architecture': 400,
  'invalid-signing-key': 400,
  'invalid-version': 400,
  'invalid-version-range': 400,
  'invalid-voltage': 400,
  'invalid-webhook': 400,
  'invalid-webhook-url': 400,
  /** Two Arduino libraries provide the same header, neither preferred by name or folder. */
  'library-ambiguous': 400,
  'library-architecture-unsupported': 400,
  'app-bundle-failed': 400,
  'app-bundle-native': 400,
  'archive-virtual-ambiguous': 400,
  'bad-bundle': 400,
  /** Not an OCI image layout nor a `docker save` archive, or a blob that does not match its digest. */
  'bad-oci-image': 400,
  'bad-payload': 400,
  'bench-board-command': 400,
  'board-invalid': 400,
  'board-not-simulated': 400,
  'board-unsupported': 400,
  'board-wrong-family': 400,
  'boot-files-device-tree': 400,
  'boot-files-firmware': 400,
  'boot-files-missing': 400,
  'boot-files-slot': 400,
  'busybox-invalid': 400,
  'busybox-missing-applets': 400,
  'busybox-not-static': 400,
  'busybox-wrong-architecture': 400,
  'elf-invalid': 400,
  'firmware-too-big': 400,
  'hex-corrupt': 400,
  'hex-invalid': 400,
  'hex-too-big': 400,
  'hex-unreadable': 400,
  'image-bad-epoch': 400,
  'image-bad-layout': 400,
  'image-input-missing': 400,
  'image-input-unsupported': 400,
  'image-unreadable': 400,
  'initramfs-module': 400,
  'initramfs-modules-root': 400,
  /** A specialised kernel asked for a Kconfig option its source does not know. */
  'kernel-config-option-unknown': 400,
  /** A recipe asked a specialised kernel for a device its VM board lacks. */
  'kernel-device-missing': 400,
  'kernel-module-compressed': 400,
  'kernel-module-cycle': 400,
  'kernel-module-invalid': 400,
  'kernel-modules-missing': 400,
  'payload-corrupt': 400,
  'payload-name-too-long': 400,
  'payload-too-large': 400,
  'pin-unknown': 400,
  'port-ambiguous': 400,
  'probe-failed': 400,
  'recipe-invalid': 400,
  'rootfs-agent-missing': 400,
  'rootfs-app-bundle': 400,
  'rootfs-certificates': 400,
  'rootfs-library-missing': 400,
  'rootfs-package-missing': 400,
  'rootfs-reboot-helper': 400,
  'rootfs-symlink-loop': 400,
  'rootfs-wrong-architecture': 400,
  'script-bad-value': 400,
  'sketch-invalid': 400,
  'tree-bad-path': 400,
  /** A UF2 file that is corrupt, cut short or built for another chip's family. */
  'uf2-invalid': 400,
  /** Several mounted drives could be the board's BOOTSEL drive: --drive says which. */
  'uf2-drive-ambiguous': 400,
  /** The --drive given has no INFO_UF2.TXT naming the board's boot ROM. */
  'uf2-drive-invalid': 400,
  'unikernel-program': 400,
  'wrong-kind': 400,

  // Who is asking is unknown, or may not do this.
  unauthorized: 401,
  'no-credentials': 401,
  'no-token': 401,
  forbidden: 403,
  /** The remote shell is off for the device (BOARDFLEET_SHELL is not on). */
  'shell-disabled': 403,
  'port-permission-denied': 403,

  // What was named does not exist.
  'not-found': 404,
  'archive-package-unknown': 404,
  'bench-board-not-running': 404,
  'board-unknown': 404,
  'bootloader-unknown': 404,
  'log-source-unknown': 404,
  'kernel-module-unknown': 404,
  'kernel-not-found': 404,
  'library-folder-not-found': 404,
  'node-runtime-not-found': 404,
  'port-not-found': 404,
  'recipe-not-found': 404,
  'sketch-not-found': 404,

  // The current state refuses it: already exists, busy, cancelled, wrong slot or board, too old.
  conflict: 409,
  'archive-resolve-conflict': 409,
  'archive-unsatisfiable': 409,
  'bench-board-running': 409,
  'board-mismatch': 409,
  'build-cancelled': 409,
  'commit-wrong-slot': 409,
  'device-offline': 409,
  'downgrade-refused': 409,
  'flash-aborted': 409,
  'image-input-changed': 409,
  /** A UF2 board can only be flashed while its boot ROM's drive is mounted (BOOTSEL held at plug-in). */
  'needs-bootsel': 409,
  'no-attempt': 409,
  'no-known-good-firmware': 409,
  'no-strategy': 409,
  'composite-needs-reboot': 409,
  'not-a-slot-boot': 409,
  'not-armed': 409,
  'port-busy': 409,
  'port-in-use': 409,
  'publish-failed': 409,
  'signature-mismatch': 409,
  'slot-on-trial': 409,
  'tree-conflict': 409,
  'tree-not-empty': 409,

  // Too large to take: the answer names the limit.
  'body-too-large': 413,
  'message-too-large': 413,

  // Too many attempts: the answer says when to try again (Retry-After).
  'too-many-attempts': 429,

  // Something we depend on answered wrongly: a mirror, a registry, the server, a board.
  'api-error': 502,
  'archive-download-failed': 502,
  'archive-expired': 502,
  'archive-hash-mismatch': 502,
  'archive-index-invalid': 502,
  'archive-index-missing': 502,
  'archive-release-invalid': 502,
  'archive-signature': 502,
  'bad-sha256': 502,
  'bad-signature': 502,
  'bad-size': 502,
  'bootloader-bad-reply': 502,
  'chunk-index-invalid': 502,
  'chunk-mismatch': 502,
  'delta-unavailable': 502,
  'download-failed': 502,
  'download-oversize': 502,
  'download-truncated': 502,
  'manifest-mismatch': 502,
  'node-runtime-corrupt': 502,
  'node-runtime-integrity': 502,
  'node-runtime-unverifiable': 502,
  'node-runtime-wrong-machine': 502,
  'provisioning-failed': 502,
  'verify-failed': 502,

  // Something we depend on is missing or out of reach: a host tool, a service, a board.
  unavailable: 503,
  'archive-keyring-missing': 503,
  'archive-unreachable': 503,
  'bench-board-gone': 503,
  'bench-board-unreachable': 503,
  'kvm-unusable': 503,
  'no-boot-config': 503,
  'no-reboot-helper': 503,
  'port-lost': 503,
  'port-open-failed': 503,
  'qemu-missing': 503,
  'registry-unreachable': 503,
  'server-unreachable': 503,
  /** The server's certificate does not chain to the pinned fleet CA (or its pin does not match). */
  'untrusted-server': 502,
  /** The TUF client refused the fleet's metadata (signature, threshold, version, expiry, length). */
  'metadata-refused': 502,
  /** Targets metadata does not sign the deployment as it is, or no signed order allows the downgrade. */
  'unsigned-target': 409,
  'tool-missing': 503,
  'toolchain-missing': 503,
  /** No mounted drive is the board's BOOTSEL drive (label and INFO_UF2.TXT). */
  'uf2-drive-not-found': 503,
  /** Writing the UF2 onto the BOOTSEL drive failed before its last block. */
  'uf2-write-failed': 503,

  // A board did not answer in time.
  'bootloader-no-answer': 504,
  'bootloader-timeout': 504,
  'pin-timeout': 504,
  /** The serial port opened, but no Firmata handshake came back (other firmware, or none). */
  'firmata-no-answer': 504,
  'device-no-answer': 504,

  // Our own failure: a step we run broke, or state we wrote is not what it should be.
  'agent-bundle-failed': 500,
  'agent-bundle-native-import': 500,
  'archive-extract-failed': 500,
  'archive-not-loaded': 500,
  'archive-tool-failed': 500,
  'bench-board-failed': 500,
  'bootloader-too-big': 500,
  'build-failed': 500,
  /** Compiling a specialised kernel failed (the message names the file). */
  'kernel-compile-failed': 500,
  'harness-build-failed': 500,
  'install-failed': 500,
  'migration-failed': 500,
  'no-committed-slot': 500,
  'no-reboot': 500,
  'no-slot-devices': 500,
  'payload-mismatch': 500,
  'payload-rootfs-unread': 500,
  'pin-table-unreadable': 500,
  'qmp-closed': 500,
  'qmp-error': 500,
  'reboot-failed': 500,
  'rollback-failed': 500,
  'slot-device': 500,
  'tool-failed': 500,
  'unknown-trial-method': 500,
  'vm-exited': 500,
  'vm-not-ready': 500,
  'vm-start-failed': 500,
} as const satisfies Record<string, number>;

/** A code from {@link ERROR_STATUS}: an unknown code does not compile. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/**
 * An error a person can act on. `code` is stable (scripts, HTTP mapping, failure reasons sent
 * over MQTT); `message` says what happened and what to try.
 */
export class BoardfleetError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BoardfleetError';
  }
}

export function isBoardfleetError(error: unknown): error is BoardfleetError {
  return error instanceof BoardfleetError;
}
