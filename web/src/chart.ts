// Daily charts drawn by uPlot on a canvas. The colours are fixed so that the browser tests can find
// each series' line among the drawn pixels.
import uPlot from "uplot";

import type { Day } from "./types";

export interface Series {
  label: string;
  color: string; // #rrggbb
  values: number[];
}

export const COLORS = { earned: "#1d4ed8", average: "#b45309", peak: "#047857" } as const;
const HEIGHT = 220;
const MAX_WIDTH = 760;

const DAY = 86_400;
const DAY_STEPS = [1, 2, 7, 14, 30, 61, 91, 182, 365].map((days) => days * DAY);

function utcDay(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(5, 10);
}

/** Midnight UTC of a day, in seconds: uPlot's time axis. */
export function dayToSeconds(day: Day): number {
  return Date.UTC(day.year, day.month - 1, day.day) / 1000;
}

/** A line chart of one value per day, in `container` (replacing what was there). */
export function dailyChart(
  container: HTMLElement,
  unit: string,
  days: Day[],
  series: Series[],
): uPlot {
  container.replaceChildren();
  const width = Math.min(MAX_WIDTH, Math.max(320, container.clientWidth));
  const options: uPlot.Options = {
    width,
    height: HEIGHT,
    scales: {
      x: { time: true },
      y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] },
    },
    // Ticks on whole days (the points are UTC days), labelled month-day in UTC.
    axes: [
      { space: 50, incrs: DAY_STEPS, values: (_u, splits) => splits.map(utcDay) },
      { label: unit, size: 70 },
    ],
    series: [
      {
        label: "Day",
        value: (_u, v) => (v === null ? "" : new Date(v * 1000).toISOString().slice(0, 10)),
      },
      ...series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: 2,
        points: { show: days.length <= 31 },
      })),
    ],
  };
  const data: uPlot.AlignedData = [days.map(dayToSeconds), ...series.map((s) => s.values)];
  return new uPlot(options, data, container);
}
