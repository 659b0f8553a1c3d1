import type { Page } from 'playwright-core';

/**
 * Runs in the page (a string: the test programs are type-checked without the DOM's types). A wide
 * table may scroll inside its own wrapper; the document may not. A button's label gives one
 * rectangle per line it occupies: tops far apart are separate lines.
 */
const FIND_LAYOUT_PROBLEMS = `(() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) {
    const sticking = [...document.querySelectorAll('body *')]
      .filter((element) => element.getBoundingClientRect().right > root.clientWidth + 0.5)
      .filter((element) => !element.closest('.table-wrap, pre, .log-view'))
      .slice(-3)
      .map((element) => '<' + element.tagName.toLowerCase() + ' class="' + element.className + '">');
    problems.push('the page scrolls sideways: ' + root.scrollWidth + ' px of content in ' + root.clientWidth +
      ' px (' + sticking.join(', ') + ')');
  }
  for (const button of document.querySelectorAll('button')) {
    if (button.getClientRects().length === 0) continue;
    const range = document.createRange();
    range.selectNodeContents(button);
    const tops = [...range.getClientRects()].map((rect) => rect.top).sort((a, b) => a - b);
    const lines = tops.filter((top, index) => index === 0 || top - tops[index - 1] > 4).length;
    if (lines > 1) problems.push('the button "' + button.textContent.trim() + '" wraps onto ' + lines + ' lines');
  }
  return problems;
})()`;

/**
 * What makes a page awkward at its viewport's width: the document scrolls sideways, or a button's
 * label wraps onto a second line. One sentence per problem, so a failing test says what to fix.
 */
export function layoutProblems(page: Page): Promise<string[]> {
  return page.evaluate<string[]>(FIND_LAYOUT_PROBLEMS);
}
