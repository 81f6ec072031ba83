// Long histories, search, blocking, muting and archiving.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after } from "node:test";

import {
  browserTest, closeBrowser, direct, eventually, expectAttr, expectClass,
  expectCount, expectText, expectTitle, hidden, post, register, users,
  visible,
} from "./lib.mjs";

after(closeBrowser);

/** The seqs of the messages shown, in page order. */
function seqs(chat) {
  return chat.messages.evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
}

/** Asserts that the page shows exactly the messages "history N" for N in
 *  from..to, in order, once each. */
async function expectRange(chat, from, to) {
  await eventually(async () => {
    const want = [];
    for (let i = from; i <= to; i++) want.push(`history ${i}`);
    assert.deepEqual(await chat.bodies(), want);
  });
}

browserTest("history: the newest first, older ones on scrolling up, no duplicates", async (s) => {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const cid = await direct(alice, bob);
  for (let i = 1; i <= 120; i++) await post(i % 3 ? alice : bob, cid, `history ${i}`);

  const b = await s.open(bob);
  await b.openConv(cid);
  // the newest page, scrolled to the bottom
  await eventually(async () => {
    const shown = await b.bodies();
    assert.ok(shown.length >= 20 && shown.length < 120, `${shown.length} messages shown`);
    assert.equal(shown.at(-1), "history 120");
  });
  const first = (await b.bodies()).length;
  await expectRange(b, 121 - first, 120);
  await visible(b.message("history 120"));
  await visible(b.$("#load-earlier"));
  const scroller = b.$("#messages-scroll");
  const atBottom = () => scroller.evaluate((e) => e.scrollHeight - e.scrollTop - e.clientHeight < 60);
  assert.ok(await atBottom(), "the newest message is in view");

  // scrolling to the top loads the page before, and keeps the view put
  const top = (await b.bodies())[0];
  await scroller.evaluate((e) => { e.scrollTop = 0; });
  await eventually(async () => {
    assert.ok((await b.bodies()).length > first, "older messages after scrolling up");
  });
  const second = (await b.bodies()).length;
  await expectRange(b, 121 - second, 120);
  await eventually(async () => {
    // the message that was on top is still in view
    const [box, item] = await Promise.all([scroller.boundingBox(), b.message(top).boundingBox()]);
    assert.ok(item.y + item.height > box.y && item.y < box.y + box.height,
              `"${top}" scrolled out of view after loading earlier messages`);
  });

  // the button loads the rest; then it goes. (A real click scrolls the
  // button into view, which loads by itself: the click event alone
  // tests the button.)
  while ((await b.bodies()).length < 120) {
    const n = (await b.bodies()).length;
    await b.$("#load-earlier").dispatchEvent("click");
    await eventually(async () => assert.ok((await b.bodies()).length > n));
  }
  await expectRange(b, 1, 120);
  await hidden(b.$("#load-earlier"));
  const shown = await seqs(b);
  assert.equal(new Set(shown).size, 120, "no message twice");
  assert.deepEqual(shown, [...shown].sort((x, y) => x - y), "in seq order");

  // scrolling to the top again loads nothing more
  await scroller.evaluate((e) => { e.scrollTop = 0; });
  await b.send("history 121");
  await expectRange(b, 1, 121);
});

browserTest("search finds a message, and the result opens its conversation there", async (s) => {
  const [alice, bob, carol] = users("Alice", "Bob", "Carol");
  await register(alice, bob, carol);
  const cid = await direct(alice, bob);
  const other = await direct(alice, carol);
  const word = "quokka" + randomBytes(3).toString("hex").replace(/\d/g, "x");
  const target = await post(bob, cid, `Remember the ${word} at the zoo?`);
  // enough after it that it is not on the first page
  for (let i = 1; i <= 70; i++) await post(i % 2 ? alice : bob, cid, `later ${i}`);
  await post(carol, other, "hello from Carol");

  const a = await s.open(alice);
  await a.openConv(other);

  // people: by user id
  await a.$("#search").fill(carol.id);
  await visible(a.$("#search-results"));
  await expectCount(a.$(`#search-users button[data-user-id="${carol.id}"]`), 1);
  await a.openConv(cid);
  await a.$(`#search-users button[data-user-id="${carol.id}"]`).click();
  await a.waitOpen(other);                // the direct chat with Carol
  await expectText(a.$("#chat-title"), "Carol");

  // messages
  await a.$("#search").fill(word);
  const hit = a.$(`#search-messages button[data-conversation-id="${cid}"][data-seq="${target.seq}"]`);
  await expectCount(hit, 1);
  await expectCount(a.$("#search-messages button"), 1);
  await expectText(hit.locator("mark"), new RegExp(word, "i"));
  await hit.click();

  await a.waitOpen(cid);
  const li = a.$(`#messages > li.msg[data-seq="${target.seq}"]`);
  await expectClass(li, "highlight");
  await expectText(li.locator(".msg-body"), `Remember the ${word} at the zoo?`);
  await eventually(async () => {
    const [box, item] = await Promise.all([a.$("#messages-scroll").boundingBox(), li.boundingBox()]);
    assert.ok(item && item.y >= box.y - 1 && item.y + item.height <= box.y + box.height + 1,
              "the found message is in view");
  });
  // nothing in between is missing or doubled
  const shown = await seqs(a);
  assert.equal(new Set(shown).size, shown.length);
  assert.equal(shown.at(-1), target.seq + 70);
  assert.deepEqual(shown, Array.from({ length: shown.length }, (_, i) => shown[0] + i));

  // fewer than two characters: no results
  await a.$("#search").fill("q");
  await hidden(a.$("#search-results"));
});

browserTest("a message body cannot fake a search highlight (I3)", async (s) => {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const cid = await direct(alice, bob);
  const word = "wombat" + randomBytes(3).toString("hex").replace(/\d/g, "x");
  await post(bob, cid, `«forged» and ${word} «again»`);

  const a = await s.open(alice);
  await a.$("#search").fill(word);
  const hit = a.$(`#search-messages button[data-conversation-id="${cid}"]`);
  await expectCount(hit, 1);
  await expectText(hit.locator("mark"), word);      // the one match only
  await expectText(hit, new RegExp(`forged» and ${word} «again`)); // as text
});

browserTest("block: the blocked user's send is refused visibly; unblock works", async (s) => {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const cid = await direct(alice, bob);
  const a = await s.open(alice);
  const b = await s.open(bob);
  await a.openConv(cid);
  await b.openConv(cid);
  await expectText(a.$("#chat-block"), "Block");
  await expectAttr(a.$("#chat-block"), "aria-pressed", "false");

  await a.$("#chat-block").click();
  await expectText(a.$("#chat-block"), "Unblock");
  await expectAttr(a.$("#chat-block"), "aria-pressed", "true");
  await visible(a.$("#chat-blocked-note"));
  assert.ok(await a.$("#composer-input").isDisabled(), "Alice's composer is disabled");

  // Bob's message is refused: an error shows, the message is not sent
  // and his text is not lost
  await b.send("why can't I reach you?");
  await visible(b.$("#toast"));
  await expectText(b.$("#toast"), /not allowed|forbidden|block/i);
  await expectCount(b.message("why can't I reach you?"), 0);
  assert.equal(await b.$("#composer-input").inputValue(), "why can't I reach you?");
  await expectCount(a.message("why can't I reach you?"), 0);

  // the block survives Alice's reload
  await a.page.reload();
  await a.waitSignedIn();
  await a.openConv(cid);
  await expectText(a.$("#chat-block"), "Unblock");
  await visible(a.$("#chat-blocked-note"));

  await a.$("#chat-block").click();
  await expectText(a.$("#chat-block"), "Block");
  await expectAttr(a.$("#chat-block"), "aria-pressed", "false");
  await hidden(a.$("#chat-blocked-note"));
  assert.ok(await a.$("#composer-input").isEnabled(), "Alice's composer is enabled again");

  await b.$("#composer-input").press("Enter");      // the kept text
  await expectCount(a.message("why can't I reach you?"), 1);
  await expectClass(b.message("why can't I reach you?"), "pending", false);
  await a.send("sorry, fixed");
  await expectCount(b.message("sorry, fixed"), 1);
});

browserTest("mute leaves a chat out of the total; archive moves it to Archived", async (s) => {
  const [alice, bob, carol] = users("Alice", "Bob", "Carol");
  await register(alice, bob, carol);
  const cid = await direct(alice, bob);
  const other = await direct(alice, carol);
  const a = await s.open(alice);
  const b = await s.open(bob);
  await b.openConv(cid);

  await a.openConv(cid);
  await expectAttr(a.$("#chat-mute"), "aria-pressed", "false");
  await a.$("#chat-mute").click();
  await expectAttr(a.$("#chat-mute"), "aria-pressed", "true");
  await visible(a.conv(cid).locator(".conv-muted"));
  await a.openConv(other);

  // a muted chat counts its own unread messages, not in the total
  await b.send("psst");
  await expectText(a.conv(cid).locator(".conv-unread"), "1");
  await hidden(a.$("#unread-total"));
  await expectTitle(a.page, /^(?!\(\d+\) )/);

  await a.openConv(cid);
  await a.$("#chat-mute").click();
  await expectAttr(a.$("#chat-mute"), "aria-pressed", "false");
  await hidden(a.conv(cid).locator(".conv-muted"));

  // archive: gone from the list, there with "Archived"
  await a.$("#chat-archive").click();
  await expectAttr(a.$("#chat-archive"), "aria-pressed", "true");
  await expectCount(a.conv(cid), 0);
  await visible(a.conv(other));
  await a.$("#show-archived").check();
  await visible(a.conv(cid));
  await expectCount(a.conv(other), 0);
  await a.$("#show-archived").uncheck();
  await expectCount(a.conv(cid), 0);
  await visible(a.conv(other));

  // and back
  await a.$("#show-archived").check();
  await a.openConv(cid);
  await a.$("#chat-archive").click();
  await expectAttr(a.$("#chat-archive"), "aria-pressed", "false");
  await expectCount(a.conv(cid), 0);
  await a.$("#show-archived").uncheck();
  await visible(a.conv(cid));
  await visible(a.conv(other));
});

browserTest("I6: a link with ?user= fills the form in and never signs in", async (s) => {
  const [mallory] = users("Mallory");
  const a = await s.open(mallory, { signIn: false });
  const asked = [];
  a.page.on("request", (r) => { if (r.url().includes("/chat/dev/token")) asked.push(r.url()); });
  const q = new URLSearchParams({ user: mallory.id, name: mallory.name });
  await a.page.goto(a.base + "?" + q);
  await visible(a.$("#signin"));
  assert.equal(await a.$("#signin-user").inputValue(), mallory.id);
  assert.equal(await a.$("#signin-name").inputValue(), mallory.name);
  await hidden(a.$("#app"));
  // the query is gone from the address, and no token was asked for
  assert.equal(new URL(a.page.url()).search, "");
  await a.page.waitForTimeout(300);
  assert.deepEqual(asked, []);
  // the person's own click signs in
  await a.$("#signin button[type=submit]").click();
  await a.waitSignedIn();
});
