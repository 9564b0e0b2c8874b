import { PageHeader } from "../components/ui";
import { href } from "../router";
import type { PageProps } from ".";

export function NotFoundPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="Page not found" />
      <p>There is no such page. <a href={href("cameras")}>Go to the cameras</a>.</p>
    </section>
  );
}
