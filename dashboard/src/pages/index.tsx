// Route name -> page. Each page is a component taking the route's parts
// (["cameras", "<id>", "draw"]).
import type { FunctionComponent } from "preact";

import { AreasPage } from "./Areas";
import { CameraPage } from "./Camera";
import { CamerasPage } from "./Cameras";
import { ChartsPage } from "./Charts";
import { ExportPage } from "./Export";
import { LoginPage } from "./Login";
import { NotFoundPage } from "./NotFound";
import { SettingsPage } from "./Settings";
import { UsersPage } from "./Users";

export type PageProps = { route: string[] };

/** "cameras" shows the grid; "cameras/<id>" one camera (settings, drawing, calibration). */
function CamerasRoute(props: PageProps) {
  return props.route.length > 1 ? <CameraPage route={props.route} /> : <CamerasPage route={props.route} />;
}

export const routes: Record<string, FunctionComponent<PageProps>> = {
  login: LoginPage,
  cameras: CamerasRoute,
  areas: AreasPage,
  charts: ChartsPage,
  export: ExportPage,
  users: UsersPage,
  settings: SettingsPage,
  notfound: NotFoundPage,
};

export const NAV: { route: string; label: string; adminOnly?: boolean }[] = [
  { route: "cameras", label: "Cameras" },
  { route: "charts", label: "Charts" },
  { route: "areas", label: "Areas" },
  { route: "export", label: "Export" },
  { route: "users", label: "Users", adminOnly: true },
  { route: "settings", label: "Settings" },
];
