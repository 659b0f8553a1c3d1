// johnny-five's README example, with the port taken from the command line:
//   node mcu/johnny-five/examples/blink.js ~/.cache/boardfleet/bench/uno/tty
// In a CommonJS project the first two lines are: const { Board, Led } = require('johnny-five');
import five from 'johnny-five';

const { Board, Led } = five;
const board = new Board({ port: process.argv[2] || '/dev/ttyACM0' });

board.on('ready', () => {
  // Create an Led on pin 13
  const led = new Led(13);
  // Blink every half second
  led.blink(500);
});
