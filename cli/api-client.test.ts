import { describe, expect, it } from 'vitest';
import { apiErrorMessage } from './api-client.ts';

describe('apiErrorMessage', () => {
  it('names the method and path without the query, then the server message', () => {
    expect(
      apiErrorMessage(
        'POST',
        '/api/v1/artifacts?name=app&version=1.2.0&sha256=ab12',
        400,
        'boards: unknown board "x"',
      ),
    ).toBe('POST /api/v1/artifacts failed (400): boards: unknown board "x"');
  });
});
