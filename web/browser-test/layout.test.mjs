// A phone-width screen, and the keyboard alone.

import assert from "node:assert/strict";
import { after } from "node:test";

import {
  browserTest, closeBrowser, direct, eventually, expectAttr, expectClass,
  expectCount, expectText, hidden, post, register, screenshot, users, visible,
} from "./lib.mjs";

after(closeBrowser);

const PHONE = { width: 390, height: 844 };

/** Asserts that locator is entirely inside the window. */
async function inWindow(chat, locator, what) {
  await eventually(async () => {
    const box = await locator.boundingBox();
    const { width, height } = chat.page.viewportSize();
    assert.ok(box, `${what} is not displayed`);
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= width + 1 &&
              box.y + box.height <= height + 1,
              `${what} is outside the ${width}x${height} window: ${JSON.stringify(box)}`);
  });
}

/** Asserts that the composer sits at the bottom of the window (the chat
 *  fills the window's height, whatever the number of messages). */
async function composerAtBottom(chat) {
  await eventually(async () => {
    const box = await chat.$("#composer").boundingBox();
    const { height } = chat.page.viewportSize();
    assert.ok(box && height - (box.y + box.height) <= 24,
              `the message box ends at ${box && box.y + box.height} px in a window ${height} px high`);
  });
}

async function noSidewaysScroll(chat) {
  const [scroll, width] = await chat.page.evaluate(() =>
    [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= width, `the page is ${scroll} px wide in a ${width} px window`);
}

browserTest("phone width: the list, a chat, and back", async (s) => {
  const [alice, bob, carol] = users("Alice", "Bob", "Carol");
  await register(alice, bob, carol);
  const cid = await direct(bob, alice);
  await post(carol, await direct(carol, alice), "Are we still on for Friday?");
  await post(bob, cid, "Hey! Did you get the tickets?");

  const b = await s.open(bob);
  await b.openConv(cid);
  const a = await s.open(alice, { viewport: PHONE,
                                  context: { isMobile: true, hasTouch: true } });

  // the list fills the screen; no chat beside it
  await visible(a.$("#conversations"));
  await hidden(a.$("#chat"));
  await expectText(a.conv(cid).locator(".conv-title"), "Bob");
  await expectText(a.conv(cid).locator(".conv-unread"), "1");
  await inWindow(a, a.conv(cid).locator("button.conv-open"), "Bob's conversation");
  await inWindow(a, a.$("#new-direct"), "New chat");
  await noSidewaysScroll(a);
  await screenshot(a.page, "phone-list");

  // open the chat: it replaces the list
  await a.conv(cid).locator("button.conv-open").tap();
  await a.waitOpen(cid);
  await hidden(a.$("#conversations"));
  await visible(a.$("#chat-back"));
  await expectCount(a.message("Hey! Did you get the tickets?"), 1);
  await inWindow(a, a.message("Hey! Did you get the tickets?"), "Bob's message");
  await inWindow(a, a.$("#composer-input"), "the message box");
  await inWindow(a, a.$("#composer-send"), "Send");
  await inWindow(a, a.$("#chat-back"), "Back");
  await composerAtBottom(a);
  await noSidewaysScroll(a);

  await a.$("#composer-input").tap();
  await a.$("#composer-input").fill("Yes, two seats in row 5.");
  await a.$("#composer-send").tap();
  await expectCount(b.message("Yes, two seats in row 5."), 1);
  await expectClass(a.message("Yes, two seats in row 5."), "mine");
  await expectText(a.message("Yes, two seats in row 5.").locator(".msg-status"), "Read");
  await b.send("Perfect, thanks!");
  await expectCount(a.message("Perfect, thanks!"), 1);
  await inWindow(a, a.message("Perfect, thanks!"), "the newest message");
  await inWindow(a, a.$("#composer-input"), "the message box");
  await composerAtBottom(a);
  await screenshot(a.page, "phone-chat");

  // back to the list
  await a.$("#chat-back").tap();
  await visible(a.$("#conversations"));
  await hidden(a.$("#chat"));
  await expectText(a.conv(cid).locator(".conv-preview"), /Perfect, thanks!/);
  await inWindow(a, a.conv(cid).locator("button.conv-open"), "Bob's conversation");
  await a.conv(cid).locator("button.conv-open").tap();
  await a.waitOpen(cid);
});

browserTest("keyboard only: sign in, open a conversation, send", async (s) => {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const cid = await direct(bob, alice);
  await post(bob, cid, "Ping me when you are in");
  const b = await s.open(bob);
  await b.openConv(cid);

  const a = await s.open(alice, { signIn: false });
  const kb = a.page.keyboard;
  const focused = () => a.page.evaluate(() => {
    const e = document.activeElement;
    return e && (e.id || e.className || e.tagName);
  });
  /** Tab until fn(document.activeElement) holds; at most 40 presses. */
  const tabTo = async (what, test, arg) => {
    for (let i = 0; i < 40; i++) {
      if (await a.page.evaluate(test, arg)) return;
      await kb.press("Tab");
    }
    assert.fail(`Tab never reached ${what} (focus on ${await focused()})`);
  };

  await visible(a.$("#signin"));
  await tabTo("the user id field", () => document.activeElement?.id === "signin-user");
  await kb.type(alice.id);
  await tabTo("the name field", () => document.activeElement?.id === "signin-name");
  await kb.type(alice.name);
  await kb.press("Enter");
  await a.waitSignedIn();

  await tabTo("Bob's conversation",
    (id) => document.activeElement?.matches(`li[data-conversation-id="${id}"] button.conv-open`),
    cid);
  await kb.press("Enter");
  await a.waitOpen(cid);
  await expectCount(a.message("Ping me when you are in"), 1);
  await composerAtBottom(a);
  await tabTo("the message box", () => document.activeElement?.id === "composer-input");

  // Shift+Enter is a new line, Enter sends
  await kb.type("I am in.");
  await kb.press("Shift+Enter");
  await kb.type("See you soon");
  await kb.press("Enter");
  const sent = b.$("#messages > li.msg").last();
  await eventually(async () => {
    assert.equal(await sent.locator(".msg-body").evaluate((e) => e.textContent),
                 "I am in.\nSee you soon");
  });
  await expectClass(sent, "theirs");
  await expectText(a.$("#messages > li.msg").last().locator(".msg-body"), "I am in. See you soon");
  assert.equal(await a.$("#composer-input").inputValue(), "");
  assert.equal(await focused(), "composer-input", "focus stays in the message box");
  await expectAttr(a.$("#conn-state"), "data-state", "open");

  // and out
  await tabTo("Sign out", () => document.activeElement?.id === "sign-out");
  await kb.press("Enter");
  await visible(a.$("#signin"));
  await hidden(a.$("#app"));
  await a.page.reload();
  await visible(a.$("#signin"));
  await hidden(a.$("#app"));
});
