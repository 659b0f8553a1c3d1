import { existsSync, statSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';
import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { BoardfleetError } from '../../protocol/errors.ts';
import { Public } from '../auth/operator-auth.guard.ts';
import { invalidRequest, notFound } from '../common/errors.ts';

/** Nest injection token for the directory holding the built dashboard (index.html, assets/). */
export const WEB_DIRECTORY = Symbol('WEB_DIRECTORY');

/**
 * Paths the dashboard never answers: an unknown API route stays a JSON 404, and so does a TUF
 * target file (the repository serves metadata only), rather than getting the app's page.
 */
const SERVER_PATHS = /^\/(api|healthz|metrics|tuf)(\/|$)/;
/** Vite names built assets by content hash, so they never change under the same name. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * Serves the built dashboard at `/`. Public: the sign-in page takes the token and the API checks
 * roles. Any other path without a file extension gets index.html, so the app's own routes
 * (`/devices/dev-…`) load on a reload or from a bookmark.
 */
@Public()
@Controller()
export class WebController {
  private readonly root: string;

  constructor(@Inject(WEB_DIRECTORY) directory: string) {
    this.root = resolve(directory);
  }

  @Get('{*path}')
  serve(@Req() request: Request, @Res() response: Response): void {
    if (SERVER_PATHS.test(request.path)) throw notFound(`route GET ${request.path}`);
    const index = join(this.root, 'index.html');
    if (!existsSync(index)) {
      throw new BoardfleetError(
        'unavailable',
        `the dashboard is not built (no ${index}): run npm run build:web, then reload`,
      );
    }
    let relative: string;
    try {
      relative = decodeURIComponent(request.path).replace(/^\/+/, '');
    } catch {
      throw invalidRequest(`the path ${request.path} is not valid URL encoding`);
    }
    const file = resolve(this.root, relative);
    if (relative !== '' && file.startsWith(this.root + sep) && isFile(file)) {
      response.sendFile(file, {
        dotfiles: 'deny',
        headers: { 'Cache-Control': relative.startsWith('assets/') ? IMMUTABLE : 'no-cache' },
      });
      return;
    }
    // A missing script or image must not get the page in its place.
    if (extname(relative) !== '') throw notFound(`file ${request.path}`);
    response.sendFile(index, { headers: { 'Cache-Control': 'no-cache' } });
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
