// Two (or three) users chatting through the page: live messages both
// ways, typing, unread badges, edit and delete, read receipts, groups.

import assert from "node:assert/strict";
import { after } from "node:test";

import {
  browserTest, closeBrowser, direct, expectAttr, expectClass, expectCount,
  expectText, expectTexts, expectTitle, hidden, post, register, rest,
  screenshot, users, visible,
} from "./lib.mjs";

after(closeBrowser);

browserTest("two users chat live both ways", async (s) => {
  const [alice, bob, carol, dan] = users("Alice", "Bob", "Carol", "Dan");
  // Alice has other conversations already (the screenshot shows a list)
  await register(alice, carol, dan);
  await post(carol, await direct(carol, alice), "See you at the standup tomorrow");
  const { conversation: club } = await rest(dan, "POST", "conversations",
    { kind: "group", title: "Book club", members: [alice.id, carol.id] });
  await post(dan, club.id, "Next month: The Left Hand of Darkness");
  const b = await s.open(bob);          // Bob first: Alice finds him
  const a = await s.open(alice);
  await expectCount(a.$("#conversations > li.conv"), 2);

  // Alice finds Bob with "New chat" and picks him
  await a.$("#new-direct").click();
  await visible(a.$("#new-direct-dialog"));
  await a.$("#new-direct-query").fill(bob.id);
  await a.$(`#new-direct-results > li > button[data-user-id="${bob.id}"]`).click();
  await hidden(a.$("#new-direct-dialog"));
  await visible(a.$("#chat"));
  await expectText(a.$("#chat-title"), "Bob");
  const cid = Number(await a.$("#chat").getAttribute("data-conversation-id"));
  assert.ok(cid > 0, "the open chat has a conversation id");
  await expectAttr(a.conv(cid), "aria-current", "true");

  await a.send("Hi Bob, it's Alice");
  const mine = a.message("Hi Bob, it's Alice");
  await expectCount(mine, 1);
  await expectClass(mine, "mine");
  await expectClass(mine, "pending", false);
  await expectText(mine.locator(".msg-status"), /^(Sent|Delivered|Read)$/);
  assert.equal(await a.$("#composer-input").inputValue(), "", "the composer is empty after sending");

  // Bob: the conversation arrives in his list with the message, unread
  await expectText(b.conv(cid).locator(".conv-title"), "Alice");
  await expectText(b.conv(cid).locator(".conv-preview"), /Hi Bob, it's Alice/);
  await expectText(b.conv(cid).locator(".conv-unread"), "1");
  await expectText(b.$("#unread-total"), "1");
  await b.openConv(cid);
  await expectText(b.$("#chat-title"), "Alice");
  const theirs = b.message("Hi Bob, it's Alice");
  await expectCount(theirs, 1);
  await expectClass(theirs, "theirs");
  assert.equal(await theirs.locator(".msg-status").count(), 0, "no status on others' messages");
  assert.equal(await theirs.locator(".msg-edit").count(), 0, "no Edit on others' messages");

  // and back
  await b.send("Hello Alice!");
  await expectClass(b.message("Hello Alice!"), "mine");
  await expectClass(a.message("Hello Alice!"), "theirs");
  await expectTexts(a.$("#messages > li.msg .msg-body"), ["Hi Bob, it's Alice", "Hello Alice!"]);
  await expectTexts(b.$("#messages > li.msg .msg-body"), ["Hi Bob, it's Alice", "Hello Alice!"]);
  await expectText(a.conv(cid).locator(".conv-preview"), /Hello Alice!/);
  // the most recent first
  await expectAttr(a.$("#conversations > li.conv").first(), "data-conversation-id", String(cid));
  await expectCount(a.$("#conversations > li.conv"), 3);

  // a few more, so that the screenshot shows a conversation
  await a.send("Lunch at noon? The new place on Main Street.");
  await expectCount(b.message("Lunch at noon? The new place on Main Street."), 1);
  await b.send("Sounds good, see you there!");
  await expectCount(a.message("Sounds good, see you there!"), 1);
  await expectText(a.message("Lunch at noon? The new place on Main Street.").locator(".msg-status"), "Read");
  await screenshot(a.page, "desktop-chat");

  // markup in a message is text, on both sides and in the list
  const html = `<img src=x onerror="window.pwned=1"><b>not bold</b> & "quotes"`;
  await b.send(html);
  for (const x of [a, b]) {
    await expectCount(x.message(html), 1);
    await expectCount(x.message(html).locator(".msg-body *"), 0);
    await expectText(x.conv(cid).locator(".conv-preview"), /<b>not bold<\/b> & "quotes"/);
    assert.equal(await x.page.evaluate(() => window.pwned), undefined);
  }
});

browserTest("typing indicator shows while the other types", async (s) => {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const a = await s.open(alice);
  const b = await s.open(bob);

  // Alice starts the chat with "New chat" and Bob's exact user id
  await a.$("#new-direct").click();
  await a.$("#new-direct-query").fill(bob.id);
  await a.$("#new-direct-query").press("Enter");
  await hidden(a.$("#new-direct-dialog"));
  const cid = await direct(alice, bob);     // the same, once per pair
  await a.waitOpen(cid);
  await expectText(a.$("#chat-title"), "Bob");
  await b.openConv(cid);
  await expectText(b.$("#typing"), "");

  // typing, then sending: gone with the message
  await a.$("#composer-input").pressSequentially("I am wri");
  await expectText(b.$("#typing"), "Alice is typing…");
  await a.$("#composer-input").pressSequentially("ting something");
  await a.$("#composer-input").press("Enter");
  await expectCount(b.message("I am writing something"), 1);
  await expectText(b.$("#typing"), "");

  // typing, then clearing the draft: gone too
  await a.$("#composer-input").pressSequentially("never mind");
  await expectText(b.$("#typing"), "Alice is typing…");
  await a.$("#composer-input").fill("");
  await expectText(b.$("#typing"), "");

  // and the other way round
  await b.$("#composer-input").pressSequentially("hm");
  await expectText(a.$("#typing"), "Bob is typing…");
  await b.$("#composer-input").fill("");
  await expectText(a.$("#typing"), "");
});

browserTest("unread badges count and clear when the conversation is opened", async (s) => {
  const [alice, bob, carol] = users("Alice", "Bob", "Carol");
  await register(alice, bob, carol);
  const cid = await direct(alice, bob);
  const other = await direct(carol, bob);
  const a = await s.open(alice);
  const b = await s.open(bob);
  await a.openConv(cid);
  await expectAttr(b.$("#unread-total"), "hidden", "");
  await expectTitle(b.page, /^(?!\(\d+\) )/);

  // Bob has no conversation open
  await a.send("one");
  await a.send("two");
  await a.send("three");
  const badge = b.conv(cid).locator(".conv-unread");
  await expectText(badge, "3");
  await visible(badge);
  await expectText(b.$("#unread-total"), "3");
  await visible(b.$("#unread-total"));
  await expectTitle(b.page, /^\(3\) /);
  await expectText(b.conv(cid).locator(".conv-preview"), /three/);
  // the conversation with news is first in the list
  await expectAttr(b.$("#conversations > li.conv").first(), "data-conversation-id", String(cid));

  // with another conversation open the badge still counts
  await b.openConv(other);
  await a.send("four");
  await expectText(badge, "4");
  await expectText(b.$("#unread-total"), "4");
  await expectTitle(b.page, /^\(4\) /);

  // opening it clears the badge, the total and the title
  await b.openConv(cid);
  await expectCount(b.message("four"), 1);
  await hidden(badge);
  await hidden(b.$("#unread-total"));
  await expectTitle(b.page, /^(?!\(\d+\) )/);

  // while it is open, new messages are read at once
  await a.send("five");
  await expectCount(b.message("five"), 1);
  await expectText(a.message("five").locator(".msg-status"), "Read");
  await hidden(badge);
  await hidden(b.$("#unread-total"));

  // and the count survives a reload (it comes from the server)
  await b.openConv(other);
  await a.send("six");
  await expectText(badge, "1");
  await b.page.reload();
  await b.waitSignedIn();
  await expectText(b.conv(cid).locator(".conv-unread"), "1");
  await expectText(b.$("#unread-total"), "1");
  await expectTitle(b.page, /^\(1\) /);
});

browserTest("edit and delete of one's own message reach the other user", async (s) => {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const cid = await direct(alice, bob);
  const a = await s.open(alice);
  const b = await s.open(bob);
  await a.openConv(cid);
  await b.openConv(cid);

  await a.send("Meet at 5?");
  await expectCount(b.message("Meet at 5?"), 1);
  await a.send("keep this one");
  await expectCount(b.message("keep this one"), 1);
  const id = await a.message("Meet at 5?").getAttribute("data-message-id");

  // Edit, then Escape cancels
  await a.message("Meet at 5?").locator("button.msg-edit").click();
  await visible(a.$("#composer-editing"));
  assert.equal(await a.$("#composer-input").inputValue(), "Meet at 5?");
  await a.$("#composer-input").press("Escape");
  await hidden(a.$("#composer-editing"));
  assert.equal(await a.$("#composer-input").inputValue(), "");

  // Edit and save with Enter
  await a.message("Meet at 5?").locator("button.msg-edit").click();
  await visible(a.$("#composer-editing"));
  await a.$("#composer-input").fill("Meet at 6? 🙂");
  await a.$("#composer-input").press("Enter");
  await hidden(a.$("#composer-editing"));
  const edited = b.$(`#messages > li.msg[data-message-id="${id}"]`);
  await expectText(edited.locator(".msg-body"), "Meet at 6? 🙂");
  await expectText(edited.locator(".msg-edited"), "edited");
  await expectText(a.$(`#messages > li.msg[data-message-id="${id}"] .msg-edited`), "edited");
  await expectCount(b.messages, 2);       // edited in place, not added
  await expectCount(a.messages, 2);
  // "keep this one" is newer: the preview stays
  await expectText(b.conv(cid).locator(".conv-preview"), /keep this one/);

  // Delete (after confirm())
  a.page.once("dialog", (d) => d.accept());
  await a.$(`#messages > li.msg[data-message-id="${id}"] button.msg-delete`).click();
  await expectClass(edited, "deleted");
  await expectText(edited.locator(".msg-body"), "Message deleted");
  await expectCount(edited.locator(".msg-edited"), 0);
  const gone = a.$(`#messages > li.msg[data-message-id="${id}"]`);
  await expectClass(gone, "deleted");
  await expectText(gone.locator(".msg-body"), "Message deleted");
  await expectCount(gone.locator("button.msg-edit, button.msg-delete"), 0);

  // deleting the newest one changes the list's preview
  a.page.once("dialog", (d) => d.accept());
  await a.message("keep this one").locator("button.msg-delete").click();
  await expectText(b.conv(cid).locator(".conv-preview"), /Message deleted/);
  await expectText(a.conv(cid).locator(".conv-preview"), /Message deleted/);

  // a dismissed confirm() deletes nothing
  await a.send("still here");
  const still = a.message("still here");
  await expectCount(b.message("still here"), 1);
  a.page.once("dialog", (d) => d.dismiss());
  await still.locator("button.msg-delete").click();
  await expectClass(still, "deleted", false);
  await expectCount(b.message("still here"), 1);
});

browserTest("read receipts: Read after the other opens the conversation", async (s) => {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const cid = await direct(alice, bob);
  const a = await s.open(alice);
  const b = await s.open(bob);
  await a.openConv(cid);

  await a.send("did you read this?");
  const status = a.message("did you read this?").locator(".msg-status");
  await expectText(b.conv(cid).locator(".conv-unread"), "1");
  // Bob's page has it (delivered) but not open (not read)
  await expectText(status, "Delivered");
  await b.openConv(cid);
  await expectCount(b.message("did you read this?"), 1);
  await expectText(status, "Read");
});

browserTest("a group of three: created from the page, messages reach everyone", async (s) => {
  const [alice, bob, carol] = users("Alice", "Bob", "Carol");
  const b = await s.open(bob);
  const c = await s.open(carol);
  const a = await s.open(alice);

  await a.$("#new-group").click();
  await visible(a.$("#new-group-dialog"));
  await a.$("#new-group-title").fill("Weekend trip");
  await a.$("#new-group-members").fill(`${bob.id}, ${carol.id}`);
  await a.$("#new-group-dialog button[type=submit]").click();
  await hidden(a.$("#new-group-dialog"));
  await expectText(a.$("#chat-title"), "Weekend trip");
  await expectText(a.$("#chat-subtitle"), "3 members");
  // a group shows an online count (presence.count), not a dot per member
  await expectText(a.$("#chat-online"), "3 online");
  const cid = Number(await a.$("#chat").getAttribute("data-conversation-id"));
  await expectAttr(a.conv(cid), "aria-current", "true");
  await expectCount(a.conv(cid).locator(".presence-dot:visible"), 0);

  await a.send("Who is in for Saturday?");
  for (const x of [b, c]) {
    await expectText(x.conv(cid).locator(".conv-title"), "Weekend trip");
    await expectText(x.conv(cid).locator(".conv-unread"), "1");
    await x.openConv(cid);
    await expectText(x.$("#chat-subtitle"), "3 members");
    const m = x.message("Who is in for Saturday?");
    await expectCount(m, 1);
    await expectClass(m, "theirs");
    await expectText(m.locator(".msg-sender"), "Alice");
  }

  await b.send("Me! I'll bring the tent.");
  await expectCount(c.message("Me! I'll bring the tent."), 1);
  await c.send("Count me in, I'll drive.");
  for (const x of [a, b, c]) {
    await expectTexts(x.$("#messages > li.msg .msg-body"),
      ["Who is in for Saturday?", "Me! I'll bring the tent.", "Count me in, I'll drive."]);
  }
  await expectText(a.message("Me! I'll bring the tent.").locator(".msg-sender"), "Bob");
  await expectText(b.message("Count me in, I'll drive.").locator(".msg-sender"), "Carol");
  await expectCount(a.message("Who is in for Saturday?").locator(".msg-sender"), 0);
  await expectText(a.message("Who is in for Saturday?").locator(".msg-status"), "Read");

  await a.send("Great, leaving at 8 from the station.");
  await expectCount(b.message("Great, leaving at 8 from the station."), 1);
  await expectCount(c.message("Great, leaving at 8 from the station."), 1);
  await expectText(a.message("Great, leaving at 8 from the station.").locator(".msg-status"), "Read");
  await screenshot(a.page, "group-chat");

  // a fourth member, added from the page, gets the group and what follows
  const [dave] = users("Dave");
  const d = await s.open(dave);
  await a.$("#chat-add-member").click();
  await visible(a.$("#add-member-dialog"));
  await a.$("#add-member-id").fill(dave.id);
  await a.$("#add-member-dialog button[type=submit]").click();
  await hidden(a.$("#add-member-dialog"));
  await expectText(a.$("#chat-subtitle"), "4 members");
  await expectText(b.$("#chat-subtitle"), "4 members");
  await expectText(d.conv(cid).locator(".conv-title"), "Weekend trip");
  await d.openConv(cid);
  await c.send("Welcome, Dave!");
  await expectCount(d.message("Welcome, Dave!"), 1);
  await expectText(d.message("Welcome, Dave!").locator(".msg-sender"), "Carol");
  await expectCount(a.message("Welcome, Dave!"), 1);
});
