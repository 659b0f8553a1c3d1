import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSketch } from './sketch-source.ts';

let sketchDir: string;

beforeAll(async () => {
  const root = await mkdtemp(join(tmpdir(), 'sketch-source-'));
  sketchDir = join(root, 'meter');
  await mkdir(sketchDir);
  await writeFile(
    join(sketchDir, 'meter.ino'),
    [
      '#include "scale.h"',
      'struct Reading { int value; };',
      '',
      'void setup() {',
      '  if (ready()) { Serial.begin(9600); }',
      '}',
      '',
      'void loop() { show(read(A0)); }',
      '',
      'static const char *label(int channel) { return channel ? "b" : "a"; }',
      'Reading read(int pin) {',
      '  return Reading{analogRead(pin)};',
      '}',
    ].join('\n'),
  );
  await writeFile(
    join(sketchDir, 'display.ino'),
    'void show(Reading reading) {\n  Serial.println(reading.value);\n}\n',
  );
  await writeFile(join(sketchDir, 'scale.h'), 'bool ready();\n');
  await writeFile(join(sketchDir, 'scale.cpp'), 'bool ready() { return true; }\n');
});

afterAll(async () => {
  await rm(join(sketchDir, '..'), { recursive: true, force: true });
});

describe('readSketch', () => {
  it('joins the .ino files, main one first, with prototypes after the sketch types and #line markers', async () => {
    const sketch = await readSketch(sketchDir);
    expect(sketch.name).toBe('meter');
    expect(sketch.extraSources).toEqual(['scale.cpp']);
    const lines = sketch.mainSource.split('\n');
    expect(lines.slice(0, 6)).toEqual([
      '#include <Arduino.h>',
      '#line 1 "meter.ino"',
      '#include "scale.h"',
      'struct Reading { int value; };',
      '',
      'void setup();',
    ]);
    expect(lines).toContain('static const char *label(int channel);');
    expect(lines).toContain('Reading read(int pin);');
    expect(lines).toContain('void show(Reading reading);');
    expect(lines).toContain('#line 4 "meter.ino"');
    expect(lines).toContain('#line 1 "display.ino"');
    expect(lines.some((line) => line.startsWith('if') || line.includes(' if('))).toBe(false);
  });

  it('rejects a path that is not a sketch', async () => {
    await expect(readSketch(join(sketchDir, 'scale.h'))).rejects.toMatchObject({ code: 'sketch-invalid' });
    await expect(readSketch(join(sketchDir, 'missing'))).rejects.toMatchObject({ code: 'sketch-not-found' });
  });
});
