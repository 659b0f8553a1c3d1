export * from './codec.ts';
export * from './errors.ts';
export * from './schemas.ts';
export * from './topics.ts';
