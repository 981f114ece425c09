// A phone app's first journey through a client generated from the served OpenAPI
// document: types by openapi-typescript (`api.ts`, generated next to this file),
// calls by openapi-fetch. `tsc --strict` compiles it only if every nullable field
// is typed nullable (the checks below), and `node out/journey.js` runs it against
// a live server: the suite does both (tests/test_generated_client.py).
//
// Input: one JSON argument {base, volunteer: {phone, password}, coordinator: {...},
// org_id, posting_id, certificate_id}; output: one JSON line of what it read.

import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

declare const process: { argv: string[]; exitCode?: number };

type Schemas = components["schemas"];
type Posting = Schemas["Posting"];
type User = Schemas["User"];

// What the document promises, checked by the compiler: these fields may be null,
// and a generated type that forgot it would let `.lat` crash at run time.
type Nullable<T> = null extends T ? true : false;
const nullable: {
  location: Nullable<Posting["location"]>;
  org: Nullable<Posting["org"]>;
  myClaim: Nullable<Posting["my_claim"]>;
  match: Nullable<Posting["match"]>;
  volunteer: Nullable<User["volunteer"]>;
  quietHours: Nullable<User["quiet_hours"]>;
  role: Nullable<Schemas["Org"]["role"]>;
  title: Nullable<Posting["title"]>;
} = {
  location: true,
  org: true,
  myClaim: true,
  match: true,
  volunteer: true,
  quietHours: true,
  role: true,
  title: false,
};

interface Input {
  base: string;
  volunteer: { phone: string; password: string };
  coordinator: { phone: string; password: string };
  org_id: number;
  posting_id: number;
  certificate_id: number;
}

function must<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`no ${what}`);
  return value;
}

async function signIn(base: string, who: { phone: string; password: string }) {
  const anonymous = createClient<paths>({ baseUrl: base });
  const { data } = await anonymous.POST("/api/v1/auth/login", { body: who });
  const token = must(data, "tokens").access_token;
  return createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${token}` } });
}

function head(bytes: ArrayBuffer, length: number): number[] {
  return Array.from(new Uint8Array(bytes.slice(0, length)));
}

async function main(): Promise<void> {
  const input = JSON.parse(must(process.argv[2], "input")) as Input;
  const anonymous = createClient<paths>({ baseUrl: input.base });

  // The wish wall is public: no token, and a posting's place and org may be null.
  const wall = must((await anonymous.GET("/api/v1/postings")).data, "wall");
  const places = wall.items.map((item) => (item.location === null ? null : [item.location.lat, item.location.lng]));
  const orgs = wall.items.map((item) => item.org?.name ?? null);

  // A volunteer signs in: the profile's volunteer record and quiet hours may be null.
  const volunteer = await signIn(input.base, input.volunteer);
  const me = must((await volunteer.GET("/api/v1/me")).data, "me");
  const volunteerNo = me.volunteer === null ? null : me.volunteer.volunteer_no;
  const quietHours = me.quiet_hours === null ? null : `${me.quiet_hours.start}-${me.quiet_hours.end}`;

  // What fits the volunteer carries its match; before and after a claim, "my claim"
  // on the posting is null, then the claim.
  const forMe = must((await volunteer.GET("/api/v1/postings", { params: { query: { for_me: true } } })).data, "for me");
  const path = { params: { path: { posting_id: input.posting_id } } };
  const before = must((await volunteer.GET("/api/v1/postings/{posting_id}", path)).data, "posting");
  const claimed = await volunteer.POST("/api/v1/postings/{posting_id}/claims", { ...path, body: {} });
  const after = must((await volunteer.GET("/api/v1/postings/{posting_id}", path)).data, "posting");

  // A coordinator's own orgs carry a role (an enum or null); the downloads are bytes.
  const coordinator = await signIn(input.base, input.coordinator);
  const mine = must((await coordinator.GET("/api/v1/orgs", { params: { query: { mine: true } } })).data, "orgs");
  const org = { params: { path: { org_id: input.org_id } } };
  const csv = await coordinator.GET("/api/v1/orgs/{org_id}/records.csv", { ...org, parseAs: "arrayBuffer" });
  const xlsx = await coordinator.GET("/api/v1/orgs/{org_id}/records.xlsx", { ...org, parseAs: "arrayBuffer" });
  const certificate = { params: { path: { certificate_id: input.certificate_id } }, parseAs: "arrayBuffer" as const };
  const pdf = await volunteer.GET("/api/v1/certificates/{certificate_id}/pdf", certificate);

  console.log(
    JSON.stringify({
      nullable,
      places,
      orgs,
      volunteer_no: volunteerNo,
      quiet_hours: quietHours,
      my_claim_before: before.my_claim,
      claim_status: claimed.data?.status ?? claimed.error?.error ?? null,
      my_claim_after: after.my_claim === null ? null : after.my_claim.status,
      match: forMe.items.map((item) => item.match?.skills ?? null),
      roles: mine.items.map((item) => item.role ?? null),
      csv: { status: csv.response.status, head: csv.data === undefined ? null : head(csv.data, 3) },
      xlsx: { status: xlsx.response.status, head: xlsx.data === undefined ? null : head(xlsx.data, 4) },
      pdf: { status: pdf.response.status, head: pdf.data === undefined ? null : head(pdf.data, 5) },
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
