// Dates and hours in the processor's time zone ([App] TimeZone), whatever the browser's is.
// Dates are "YYYY-MM-DD" strings throughout, as the API reads and writes them.

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-CA", {
        timeZone, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      });
    } catch {
      // An IANA name the browser does not know: fall back to UTC rather than fail the page.
      f = new Intl.DateTimeFormat("en-CA", {
        timeZone: "UTC", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      });
    }
    formatters.set(timeZone, f);
  }
  return f;
}

/** The local date and hour of an instant in `timeZone`: {date: "2009-03-01", hour: 10}. */
export function localParts(instant: Date, timeZone: string): { date: string; hour: number; minute: number } {
  const parts: Record<string, string> = {};
  for (const p of formatter(timeZone).formatToParts(instant)) parts[p.type] = p.value;
  return {
    date: `${parts.year}-${parts.month}-${parts.day}`,
    hour: Number(parts.hour) % 24,
    minute: Number(parts.minute),
  };
}

/** Today's date in `timeZone`. */
export function todayIn(timeZone: string, now: Date = new Date()): string {
  return localParts(now, timeZone).date;
}

function toUtc(day: string): Date {
  return new Date(`${day}T00:00:00Z`);
}

/** `day` plus `n` days (n may be negative). */
export function addDays(day: string, n: number): string {
  const d = toUtc(day);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** Days from `first` to `last`, both included (empty when first > last). */
export function datesBetween(first: string, last: string): string[] {
  const out: string[] = [];
  for (let d = first; d <= last && out.length < 400; d = addDays(d, 1)) out.push(d);
  return out;
}

export function isDate(text: string): boolean {
  return /^\d{4}-\d{2}-\d{2}$/.test(text) && !Number.isNaN(toUtc(text).getTime());
}

/** A key for the local hour of an instant: "2009-03-01 10". */
export function hourKey(instant: Date, timeZone: string): string {
  const p = localParts(instant, timeZone);
  return `${p.date} ${String(p.hour).padStart(2, "0")}`;
}

/** "Sun 1 Mar" style label of a date (the date itself, no time zone shift); without the
 * weekday when `weekday` is false. */
export function dateLabel(day: string, weekday = true): string {
  return toUtc(day).toLocaleDateString(undefined, {
    timeZone: "UTC", weekday: weekday ? "short" : undefined, day: "numeric", month: "short",
    year: weekday ? undefined : "numeric",
  });
}
