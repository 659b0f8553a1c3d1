import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{protocol,lib,server,builder,device-agent,mcu,boards,firmware-recipes,cli,test}/**/*.test.ts'],
    // Integration tests start brokers, databases, ptys and simulated boards: give them room.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: more workers only make the real-time simulated boards miss their deadlines.
    maxWorkers: 2,
  },
});
