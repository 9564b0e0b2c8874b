import { PageHeader } from "../components/ui";
import type { PageProps } from ".";

/** Route: ["cameras", "<id>", "calibration"]. */
export function CalibrationPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="Calibration" />
      <p>Coming soon.</p>
    </section>
  );
}
