import { Body, Controller, Inject, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { operations } from '../../protocol/api/operations.ts';
import { type Me, SESSION_COOKIE, signInBody } from '../../protocol/api/session.ts';
import type { EmptyBody } from '../../protocol/api/shared.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { cookie, OperatorAuthenticator, requireCsrfHeader } from './operator-authenticator.ts';

/** A dashboard session lasts this long at most (less when its token expires sooner). */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;

/**
 * The dashboard's sign-in and sign-out. The page hands its token over once; from then on the
 * browser holds only an HttpOnly cookie that scripts cannot read, so an injected script cannot
 * carry the token away, and nothing of it is left in the browser's storage.
 */
@Controller()
export class SignInController {
  constructor(@Inject(OperatorAuthenticator) private readonly auth: OperatorAuthenticator) {}

  @ApiRoute(operations.signIn)
  async signIn(
    @Req() request: Request,
    @Body() body: unknown,
    @Res({ passthrough: true }) response: Response,
  ): Promise<Me> {
    // Without it a cross-site form could sign a victim's browser in as the attacker.
    requireCsrfHeader(request);
    const { token } = parseBody(signInBody, body);
    const now = this.auth.clock.now();
    const operator = await this.auth.tokens.findByToken(token, now);
    if (!operator)
      throw new BoardfleetError('unauthorized', 'the operator token is unknown, revoked or expired');
    const expiresAt = Math.min(now + SESSION_TTL_MS, operator.expiresAt ?? Number.POSITIVE_INFINITY);
    const secret = await this.auth.sessions.create(operator.tokenId, expiresAt, now);
    response.cookie(SESSION_COOKIE, secret, { ...cookieOptions(request), maxAge: expiresAt - now });
    return { name: operator.name, role: operator.role };
  }

  @ApiRoute(operations.signOut)
  async signOut(@Req() request: Request, @Res({ passthrough: true }) response: Response): Promise<EmptyBody> {
    const secret = cookie(request, SESSION_COOKIE);
    if (secret) await this.auth.sessions.delete(secret);
    response.clearCookie(SESSION_COOKIE, cookieOptions(request));
    return {};
  }
}

/** Secure when the browser reached us over https, directly or through a proxy that says so. */
function cookieOptions(request: Request) {
  const forwarded = String(request.headers['x-forwarded-proto'] ?? '')
    .split(',')[0]
    ?.trim();
  return {
    httpOnly: true,
    sameSite: 'strict' as const,
    path: '/',
    secure: request.secure || forwarded === 'https',
  };
}
