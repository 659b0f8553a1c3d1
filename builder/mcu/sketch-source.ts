import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';

export interface Sketch {
  name: string;
  directory: string;
  /** The .ino files joined into one C++ translation unit, as the Arduino IDE does. */
  mainSource: string;
  /** Plain .c, .cpp and .S files beside the sketch, compiled as they are. */
  extraSources: string[];
}

const CONTROL_KEYWORDS = new Set(['if', 'else', 'for', 'while', 'switch', 'do', 'return', 'catch']);
// A function definition starting at column 0: return type, name, parameter list, opening brace.
const FUNCTION_DEFINITION = /^([A-Za-z_][\w:<>,*& \t]*?[\s*&]+)([A-Za-z_]\w*)\s*\(([^;{}()]*)\)\s*\{/gm;

/**
 * Reads a sketch (a .ino file or its folder) into one C++ source: `#include <Arduino.h>`,
 * then prototypes for the sketch's functions so they can be called before they are defined,
 * with `#line` directives keeping compiler messages pointed at the .ino lines.
 */
export async function readSketch(sketchPath: string): Promise<Sketch> {
  const absolute = resolve(sketchPath);
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(absolute)).isDirectory();
  } catch {
    throw new BoardfleetError('sketch-not-found', `No sketch at ${sketchPath}`);
  }
  const directory = isDirectory ? absolute : dirname(absolute);
  const name = basename(directory);
  const mainFile = isDirectory ? join(directory, `${name}.ino`) : absolute;
  if (extname(mainFile) !== '.ino') {
    throw new BoardfleetError(
      'sketch-invalid',
      `${sketchPath} is not an Arduino sketch (.ino file or its folder)`,
    );
  }
  const entries = (await readdir(directory)).sort();
  const inoFiles = [
    basename(mainFile),
    ...entries.filter((entry) => entry.endsWith('.ino') && entry !== basename(mainFile)),
  ];
  const parts: Array<{ file: string; text: string }> = [];
  for (const file of inoFiles) {
    try {
      parts.push({ file, text: await readFile(join(directory, file), 'utf8') });
    } catch {
      throw new BoardfleetError('sketch-not-found', `Cannot read sketch file ${join(directory, file)}`);
    }
  }
  const extraSources = entries.filter((entry) => ['.c', '.cpp', '.S'].includes(extname(entry)));
  return { name: basename(mainFile, '.ino'), directory, mainSource: joinSketch(parts), extraSources };
}

function joinSketch(parts: Array<{ file: string; text: string }>): string {
  const prototypes = parts.flatMap(({ text }) => findPrototypes(text));
  const [first, ...rest] = parts;
  if (!first) throw new BoardfleetError('sketch-invalid', 'The sketch has no .ino file');
  const firstDefinition = firstFunctionLine(first.text);
  const lines = first.text.split('\n');
  const before = lines.slice(0, firstDefinition).join('\n');
  const after = lines.slice(firstDefinition).join('\n');
  return [
    '#include <Arduino.h>',
    `#line 1 "${first.file}"`,
    before,
    ...prototypes,
    `#line ${firstDefinition + 1} "${first.file}"`,
    after,
    ...rest.flatMap(({ file, text }) => [`#line 1 "${file}"`, text]),
    '',
  ].join('\n');
}

function findPrototypes(text: string): string[] {
  const withoutComments = text
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ' '))
    .replace(/\/\/.*$/gm, '');
  const prototypes: string[] = [];
  for (const match of withoutComments.matchAll(FUNCTION_DEFINITION)) {
    const [, returnType = '', name = '', parameters = ''] = match;
    const type = returnType.trim();
    if (CONTROL_KEYWORDS.has(name) || CONTROL_KEYWORDS.has(type) || type.startsWith('#')) continue;
    const separator = /[*&]$/.test(type) ? '' : ' ';
    prototypes.push(`${type}${separator}${name}(${parameters.replace(/\s+/g, ' ').trim()});`);
  }
  return prototypes;
}

/** Prototypes go just before the first function, after the sketch's own types and includes. */
function firstFunctionLine(text: string): number {
  const match = new RegExp(FUNCTION_DEFINITION.source, 'm').exec(text);
  if (!match) return text.split('\n').length;
  return text.slice(0, match.index).split('\n').length - 1;
}
