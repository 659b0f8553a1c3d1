/**
 * Device certificates over HTTPS, for a device that has its id and secret but no certificate yet
 * (one given its credentials, one whose certificate expired while it was away, or a fleet that
 * began to require them). Renewals go over MQTT (`certificate-request`, `certificate`).
 */
import { z } from 'zod';
import { certificateRequestPem, deviceCertificatePem } from '../schemas.ts';
import { named } from './shared.ts';

export const requestDeviceCertificateBody = named(
  'RequestDeviceCertificate',
  z.strictObject({
    csr: certificateRequestPem.describe(
      'PKCS#10 request (PEM) for an EC P-256 or P-384 key the device keeps; subject CN = the device id',
    ),
  }),
);

export const issuedDeviceCertificateSchema = named(
  'IssuedDeviceCertificate',
  z.object({
    certificatePem: deviceCertificatePem
      .nullable()
      .describe(
        'client certificate (PEM) of the fleet CA for the key of the request, CN = the device id; null when this fleet issues none (BOARDFLEET_DEVICE_CERTIFICATES=off)',
      ),
  }),
);

export type RequestDeviceCertificate = z.infer<typeof requestDeviceCertificateBody>;
export type IssuedDeviceCertificate = z.infer<typeof issuedDeviceCertificateSchema>;
