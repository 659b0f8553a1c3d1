import type { RequestHandler } from 'express';

/** Where the OpenAPI UI and its documents are mounted (`/api/docs`, `/api/docs/openapi.json`, `/api/docs-yaml`). */
export const API_DOCS_ROUTE = 'api/docs';
const API_DOCS_PATH = /^\/api\/docs(?:[/-]|$)/;

/** Whether `path` is the OpenAPI UI or one of its documents. */
export const isApiDocsPath = (path: string): boolean => API_DOCS_PATH.test(path);

/**
 * The dashboard is a Vite build: one module script and one stylesheet from `/assets`, and it talks
 * only to this server. Nothing inline runs, no plugin loads, and no other site may frame it.
 */
const APP_POLICY = {
  'default-src': "'self'",
  'script-src': "'self'",
  'style-src': "'self'",
  'img-src': "'self' data:",
  'connect-src': "'self'",
  'object-src': "'none'",
  'base-uri': "'none'",
  'form-action': "'self'",
  'frame-ancestors': "'none'",
};

/** Swagger UI's page carries `<style>` blocks and style attributes of its own; its scripts are files. */
const API_DOCS_POLICY = { ...APP_POLICY, 'style-src': "'self' 'unsafe-inline'" };

const policy = (directives: Record<string, string>) =>
  Object.entries(directives)
    .map(([name, value]) => `${name} ${value}`)
    .join('; ');

const APP_CSP = policy(APP_POLICY);
const API_DOCS_CSP = policy(API_DOCS_POLICY);

/**
 * The headers every answer carries: a Content-Security-Policy, no MIME sniffing (a JSON error must
 * never run as a script), no framing (clickjacking of the dashboard's buttons), no Referer leaving
 * with a dashboard URL.
 */
export function securityHeaders(path: string): Record<string, string> {
  return {
    'Content-Security-Policy': isApiDocsPath(path) ? API_DOCS_CSP : APP_CSP,
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
  };
}

/** Express middleware: sets {@link securityHeaders} before any route, filter or static file answers. */
export const setSecurityHeaders: RequestHandler = (request, response, next) => {
  response.set(securityHeaders(request.path));
  next();
};
