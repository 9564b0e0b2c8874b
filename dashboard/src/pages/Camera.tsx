import { PageHeader } from "../components/ui";
import { CalibrationPage } from "./Calibration";
import { CameraDrawPage } from "./CameraDraw";
import type { PageProps } from ".";

/** Route: ["cameras", "<id>"] settings; [..., "draw"] drawing; [..., "calibration"]. */
export function CameraPage(props: PageProps) {
  if (props.route[2] === "draw") return <CameraDrawPage route={props.route} />;
  if (props.route[2] === "calibration") return <CalibrationPage route={props.route} />;
  return (
    <section>
      <PageHeader title={`Camera ${props.route[1]}`} />
      <p>Coming soon.</p>
    </section>
  );
}
