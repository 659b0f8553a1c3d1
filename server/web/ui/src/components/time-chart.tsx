import { useEffect, useMemo, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  color: string;
  /** Draw steps (a state that holds until it changes) instead of lines. */
  stepped?: boolean;
}

const HEIGHT = 180;

/**
 * A time series chart (uPlot). `x` is milliseconds; a null y leaves a gap in the line, which is
 * how missed heartbeats show. The width follows the container, so it fits a phone and a desktop.
 */
export function TimeChart(props: {
  title: string;
  series: ChartSeries[];
  x: number[];
  ys: (number | null)[][];
  range?: [number, number];
  yRange?: [number, number];
  unit?: string;
  note?: string;
}) {
  const container = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  // Read by the x scale on every redraw, so a new range needs no new chart.
  const range = useRef(props.range);
  range.current = props.range;
  const data = useMemo<uPlot.AlignedData>(
    () => [props.x.map((ms) => ms / 1000), ...props.ys],
    // The y columns' identities, not the wrapping array's: callers pass a new array each render.
    [props.x, ...props.ys],
  );

  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const unit = props.unit ?? '';
    const options: uPlot.Options = {
      width: Math.max(200, element.clientWidth),
      height: HEIGHT,
      scales: {
        x: {
          time: true,
          range: (_chart, min, max) =>
            range.current ? [range.current[0] / 1000, range.current[1] / 1000] : [min, max],
        },
        y: props.yRange ? { range: props.yRange } : {},
      },
      axes: [
        { values: localTimeTicks, space: 70 },
        { values: (_chart, ticks) => ticks.map((tick) => `${+tick.toFixed(2)}${unit}`), size: 60 },
      ],
      series: [
        {},
        ...props.series.map((series) => ({
          label: series.label,
          stroke: series.color,
          width: 2,
          ...(series.stepped ? { paths: uPlot.paths.stepped?.({ align: 1 }) } : {}),
        })),
      ],
      legend: { live: false },
    };
    const instance = new uPlot(options, data, element);
    chart.current = instance;
    const observer = new ResizeObserver(() =>
      instance.setSize({ width: Math.max(200, element.clientWidth), height: HEIGHT }),
    );
    observer.observe(element);
    return () => {
      observer.disconnect();
      instance.destroy();
      chart.current = null;
    };
  }, [props.title]);

  useEffect(() => {
    chart.current?.setData(data);
  }, [data]);

  return (
    <figure class="chart" data-testid="health-chart" data-points={props.x.length}>
      <figcaption>
        {props.title}
        {props.note && <span class="muted"> — {props.note}</span>}
      </figcaption>
      <div ref={container} role="img" aria-label={`${props.title}: ${props.x.length} points`} />
    </figure>
  );
}

const DAY_SECONDS = 86_400;

/**
 * Time axis labels in the browser's locale and time zone (uPlot's own are US-style): dates once ticks
 * are a day apart, date and time when the range spans days, else the time.
 */
function localTimeTicks(_chart: uPlot, ticks: number[], _axis: number, _space: number, increment: number) {
  const spansDays = (ticks.at(-1) ?? 0) - (ticks[0] ?? 0) >= DAY_SECONDS;
  const format = new Intl.DateTimeFormat(
    undefined,
    increment >= DAY_SECONDS
      ? { dateStyle: 'short' }
      : spansDays
        ? { month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' }
        : increment < 60
          ? { timeStyle: 'medium' }
          : { timeStyle: 'short' },
  );
  return ticks.map((tick) => format.format(tick * 1000));
}
