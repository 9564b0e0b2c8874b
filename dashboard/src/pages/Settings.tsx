import { PageHeader } from "../components/ui";
import type { PageProps } from ".";

export function SettingsPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="Settings" />
      <p>Coming soon.</p>
    </section>
  );
}
