import { z } from 'zod';

const tag = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, 'tags are 1-64 letters, digits, . _ : -');

export const createDeviceBody = z.strictObject({
  name: z.string().min(1).max(128),
  board: z.string().min(1).max(64).optional(),
  tags: z.array(tag).max(32).optional(),
});

export const updateDeviceBody = z.strictObject({ tags: z.array(tag).max(32) });

export const listDevicesQuery = z.strictObject({
  tag: tag.optional(),
  board: z.string().max(64).optional(),
  online: z
    .enum(['true', 'false'])
    .transform((value) => value === 'true')
    .optional(),
  version: z.string().min(1).max(64).optional(),
  q: z.string().trim().max(128).optional(),
  sort: z.enum(['name', 'lastSeen']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  offset: z.coerce.number().int().min(0).default(0),
});

export const timeRangeQuery = z.strictObject({
  from: z.coerce.number().int().min(0).optional(),
  to: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1_000),
});

export const sendCommandBody = z.strictObject({
  type: z.enum(['ping', 'report']),
  args: z.record(z.string(), z.unknown()).optional(),
});

export const createProvisioningTokenBody = z.strictObject({
  name: z.string().min(1).max(128).default('fleet'),
  expiresInHours: z
    .number()
    .positive()
    .max(24 * 365)
    .optional(),
});

export const provisionBody = createDeviceBody;
