import { PageHeader } from "../components/ui";
import type { PageProps } from ".";

export function UsersPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="Users" />
      <p>Coming soon.</p>
    </section>
  );
}
