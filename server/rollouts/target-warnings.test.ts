import { describe, expect, it } from 'vitest';
import { targetWarnings } from './target-warnings.ts';

describe('targetWarnings', () => {
  it.each([
    { targets: [], dynamic: true, expected: /no device matches the target: the rollout would wait/ },
    { targets: [], dynamic: false, expected: /^no device matches the target$/ },
    {
      targets: [{ online: false }, { online: false }],
      dynamic: true,
      expected: /all 2 matching device\(s\) are offline/,
    },
  ])('warns about $targets.length device(s), dynamic $dynamic', ({ targets, dynamic, expected }) => {
    const warnings = targetWarnings(targets, dynamic);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(expected);
  });

  it('says nothing when one matching device is online', () => {
    expect(targetWarnings([{ online: false }, { online: true }], true)).toEqual([]);
  });
});
