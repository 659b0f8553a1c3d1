import { defineConfig } from 'vitest/config';

/** Tests beside their code (each part alone, sometimes with one real tool) and the suite in test/ (real processes). */
const UNIT_TESTS = '{protocol,lib,server,builder,device-agent,mcu,boards,firmware-recipes,cli}/**/*.test.ts';
const INTEGRATION_TESTS = 'test/**/*.test.ts';

export default defineConfig({
  test: {
    // Integration tests start brokers, databases, ptys and simulated boards: give them room.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: more workers only make the real-time simulated boards miss their deadlines.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'unit', include: [UNIT_TESTS] } },
      { extends: true, test: { name: 'integration', include: [INTEGRATION_TESTS] } },
    ],
  },
});
