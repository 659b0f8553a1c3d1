#!/usr/bin/env node
// The CLI runs from TypeScript sources through tsx's loader, so a checkout needs no build step.
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

// Our tsconfig (decorators), wherever the command is run from: tsx would look in the working directory.
register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
const { main } = await import('./main.ts');
await main(process.argv);
