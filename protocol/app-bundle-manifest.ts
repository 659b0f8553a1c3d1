import { z } from 'zod';

/** The file at the top of an app bundle that says how to run it; the agent and the builder read it. */
export const APP_BUNDLE_MANIFEST = 'boardfleet-app.json';

/** `boardfleet-app.json` at the top of an app bundle (a tar.gz). */
export const appBundleManifestSchema = z.strictObject({
  /** argv of the application, run from the bundle's directory. */
  start: z.array(z.string().min(1)).min(1),
  env: z.record(z.string(), z.string()).default({}),
  healthCheck: z
    .strictObject({
      /** A command that exits 0 when the app is healthy … */
      command: z.array(z.string().min(1)).min(1).optional(),
      /** … or a URL that answers 2xx. */
      http: z.string().url().optional(),
      timeoutSeconds: z.number().positive().max(3600).default(30),
    })
    .default({ timeoutSeconds: 30 }),
});

export type AppBundleManifest = z.infer<typeof appBundleManifestSchema>;
