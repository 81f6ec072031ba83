// Attachments in the page: the attach button, drop and paste, the strip
// of previews with progress and cancel, image bubbles with their
// thumbnails, the viewer, file chips and their downloads (issue 16).
// nginx has chat_upload_path, the chat_files location and
// chat_upload_max_size 1m (t/test_browser.py).

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after } from "node:test";
import zlib from "node:zlib";

import {
  browserTest, closeBrowser, direct, eventually, expectAttr, expectCount,
  expectText, hidden, history, register, rest, screenshot, users, visible,
} from "./lib.mjs";

after(closeBrowser);

/** A real PNG of width x height (RGB, a gradient), built here. */
function png(width, height) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);     // 8 bits, RGB, no interlace
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      raw[row + 1 + x * 3] = (x * 255 / width) | 0;
      raw[row + 2 + x * 3] = (y * 255 / height) | 0;
      raw[row + 3 + x * 3] = 160;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A tiny valid PDF (one empty page), its xref offsets computed. */
function pdf() {
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
  ];
  let out = "%PDF-1.4\n";
  const offsets = [];
  objects.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, "0")} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, "latin1");
}

/** Two users with their direct conversation open in two pages. */
async function pair(s) {
  const [alice, bob] = users("Alice", "Bob");
  await register(alice, bob);
  const cid = await direct(alice, bob);
  const a = await s.open(alice);
  const b = await s.open(bob);
  await a.openConv(cid);
  await b.openConv(cid);
  return { alice, bob, cid, a, b };
}

/** Dispatches a synthesised event carrying files (a DataTransfer) in the
 *  page: kind "paste" on the composer, "drop" on the conversation. */
async function dispatchFiles(chat, kind, files) {
  await chat.page.evaluate(async ({ kind, files }) => {
    const dt = new DataTransfer();
    for (const f of files) {
      dt.items.add(new File([new Uint8Array(f.bytes)], f.name, { type: f.type }));
    }
    if (kind === "paste") {
      document.getElementById("composer-input").dispatchEvent(
        new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
    } else {
      const target = document.getElementById("messages-scroll");
      for (const type of ["dragenter", "dragover", "drop"]) {
        target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true,
                                                   cancelable: true }));
      }
    }
  }, { kind, files: files.map((f) => ({ ...f, bytes: [...f.bytes] })) });
}

const drafts = (chat) => chat.$("#drafts > li.draft");

browserTest("attachments: alice sends a photo and a PDF, bob sees them, opens the photo, downloads the PDF", async (s) => {
  const { alice, cid, a, b } = await pair(s);
  const photo = png(640, 480);
  const doc = pdf();

  // the attach button's file input, two files at once
  await a.$("#attach-input").setInputFiles([
    { name: "photo.png", mimeType: "image/png", buffer: photo },
    { name: "report.pdf", mimeType: "application/pdf", buffer: doc },
  ]);
  await expectCount(drafts(a), 2);
  await expectAttr(drafts(a).nth(0), "data-state", "done");
  await expectAttr(drafts(a).nth(1), "data-state", "done");
  await expectText(drafts(a).nth(0).locator(".draft-name"), "photo.png");
  await visible(drafts(a).nth(0).locator("img.draft-thumb"));
  await expectText(drafts(a).nth(1).locator(".draft-name"), "report.pdf");
  await expectText(drafts(a).nth(1).locator(".draft-size"), `${doc.length} B`);
  await a.$("#composer-input").fill("the photo and the report");
  await screenshot(a.page, "attachments-strip");
  await a.$("#composer-input").press("Enter");
  await expectCount(drafts(a), 0);
  await hidden(a.$("#drafts"));

  // stored with a thumbnail made in the browser (320 px wide)
  let stored;
  await eventually(async () => {
    const msgs = await history(alice, cid);
    stored = msgs.find((m) => m.body === "the photo and the report");
    assert.ok(stored, "the message is stored");
  });
  const [img, file] = stored.attachments;
  assert.equal(img.type, "image/png");
  assert.equal(img.name, "photo.png");
  assert.deepEqual([img.width, img.height], [640, 480]);
  assert.ok(img.thumbnail, "a thumbnail");
  assert.deepEqual([img.thumbnail.width, img.thumbnail.height], [320, 240]);
  assert.equal(file.type, "application/pdf");
  assert.equal(file.size, doc.length);
  assert.equal(file.thumbnail, null);

  // bob: the image bubble shows the thumbnail, its size reserved
  const msg = b.message("the photo and the report");
  await visible(msg);
  const bubble = msg.locator("button.att-image");
  await visible(bubble);
  const thumb = bubble.locator("img");
  await expectAttr(thumb, "width", "240");
  await expectAttr(thumb, "height", "180");
  await eventually(async () => {
    const natural = await thumb.evaluate((i) => [i.complete, i.naturalWidth, i.naturalHeight]);
    assert.deepEqual(natural, [true, 320, 240], "the thumbnail is loaded");
  });
  // the PDF's chip: icon, name, size and a download link
  const chip = msg.locator(".att-file");
  await expectText(chip.locator(".att-name"), "report.pdf");
  await expectText(chip.locator(".att-size"), `${doc.length} B`);
  await screenshot(b.page, "attachments");

  // the viewer: the full image, closed with Escape, focus back on the bubble
  await bubble.click();
  const viewer = b.$("#viewer");
  await visible(viewer);
  await expectText(b.$("#viewer-title"), "photo.png");
  await eventually(async () => {
    const natural = await b.$("#viewer-image").evaluate((i) => [i.complete, i.naturalWidth]);
    assert.deepEqual(natural, [true, 640]);
  });
  const [full] = await Promise.all([
    b.page.waitForEvent("download"),
    b.$("#viewer-download").click(),
  ]);
  assert.equal(full.suggestedFilename(), "photo.png");
  assert.ok(photo.equals(await readFile(await full.path())), "the photo's bytes");
  await b.page.keyboard.press("Escape");
  await hidden(viewer);
  await eventually(async () => {
    assert.ok(await bubble.evaluate((e) => e === document.activeElement), "focus back");
  });

  // the PDF's download link gives the same bytes back
  const [download] = await Promise.all([
    b.page.waitForEvent("download"),
    chip.locator("a.att-download").click(),
  ]);
  assert.equal(download.suggestedFilename(), "report.pdf");
  assert.ok(doc.equals(await readFile(await download.path())), "the PDF's bytes");
});

browserTest("attachments: a pasted and a dropped image join the strip; removing one empties its place", async (s) => {
  const { a, b } = await pair(s);
  await dispatchFiles(a, "paste", [{ name: "pasted.png", type: "image/png", bytes: png(400, 200) }]);
  await expectCount(drafts(a), 1);
  await dispatchFiles(a, "drop", [{ name: "dropped.png", type: "image/png", bytes: png(100, 80) }]);
  await expectCount(drafts(a), 2);
  await expectText(drafts(a).nth(0).locator(".draft-name"), "pasted.png");
  await expectText(drafts(a).nth(1).locator(".draft-name"), "dropped.png");
  await expectAttr(drafts(a).nth(0), "data-state", "done");
  await expectAttr(drafts(a).nth(1), "data-state", "done");
  // a text paste stays text
  await a.page.evaluate(() => {
    const dt = new DataTransfer();
    dt.setData("text/plain", "x");
    document.getElementById("composer-input").dispatchEvent(
      new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
  });
  await expectCount(drafts(a), 2);

  // removed with its button (by keyboard): focus moves to the next one
  await drafts(a).nth(0).locator(".draft-remove").focus();
  await a.page.keyboard.press("Enter");
  await expectCount(drafts(a), 1);
  await expectText(drafts(a).nth(0).locator(".draft-name"), "dropped.png");

  // sent with no text: the file's name is the body; a small image has
  // no thumbnail and shows itself
  await a.$("#composer-input").focus();
  await a.page.keyboard.press("Enter");
  const msg = b.message("dropped.png");
  await visible(msg);
  const img = msg.locator("button.att-image img");
  await expectAttr(img, "width", "100");
  await expectAttr(img, "height", "80");
  await eventually(async () => {
    assert.equal(await img.evaluate((i) => i.naturalWidth), 100);
  });
});

browserTest("attachments: a cancelled upload leaves nothing; one over the limit fails in the strip", async (s) => {
  const { a, b } = await pair(s);
  // a slow upload (the browser's upload throttled to 64 KB/s), cancelled
  // while it runs
  const cdp = await a.context.newCDPSession(a.page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 64 * 1024,
  });
  const big = Buffer.alloc(900 * 1024, 7);
  await a.$("#attach-input").setInputFiles([
    { name: "slow.bin", mimeType: "application/octet-stream", buffer: big },
  ]);
  await expectCount(drafts(a), 1);
  await eventually(async () => {
    const v = await drafts(a).locator("progress").evaluate((p) => p.value);
    assert.ok(v > 0 && v < 1, `progress ${v}`);
  });
  await drafts(a).locator(".draft-remove").click();
  await expectCount(drafts(a), 0);
  await hidden(a.$("#drafts"));
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });

  // over chat_upload_max_size (1m): the strip says so, the composer works
  await a.$("#attach-input").setInputFiles([
    { name: "huge.bin", mimeType: "application/octet-stream",
      buffer: Buffer.alloc(1024 * 1024 + 1, 1) },
  ]);
  await expectAttr(drafts(a), "data-state", "error");
  await expectText(drafts(a).locator(".draft-error"), /too large/);
  // sending is refused while it is there, and the text stays
  await a.send("not yet");
  await expectText(a.$("#toast"), /failed to upload/);
  assert.equal(await a.$("#composer-input").inputValue(), "not yet");
  await drafts(a).locator(".draft-remove").click();
  await expectCount(drafts(a), 0);
  await a.$("#composer-input").press("Enter");
  await visible(b.message("not yet"));
  assert.equal(await b.message("not yet").locator(".att").count(), 0);
});

browserTest("attachments: a link (chat_attachment_hosts) still shows as a link", async (s) => {
  const { alice, cid, b } = await pair(s);
  await rest(alice, "POST", `conversations/${cid}/messages`, {
    body: "the spec", client_msg_id: `link-${cid}`,
    attachments: [{ url: "https://cdn.example.com/spec.pdf", name: "spec.pdf",
                    mime: "application/pdf", size: 2048 }],
  });
  const msg = b.message("the spec");
  await visible(msg);
  const link = msg.locator(".att-link a");
  await expectText(link, "spec.pdf");
  await expectAttr(link, "href", "https://cdn.example.com/spec.pdf");
  await expectAttr(link, "rel", "noopener noreferrer");
  await expectText(msg.locator(".att-link .att-size"), "2.0 KB");
  assert.equal(await msg.locator(".att-image, .att-file").count(), 0);
});

browserTest("attachments: a refused send shows why and gives the text and the files back", async (s) => {
  const { alice, bob, a, b } = await pair(s);
  await rest(bob, "PUT", "blocks/" + encodeURIComponent(alice.id));
  await a.$("#attach-input").setInputFiles([
    { name: "notes.pdf", mimeType: "application/pdf", buffer: pdf() },
  ]);
  await expectAttr(drafts(a), "data-state", "done");
  await a.send("can you read this?");
  await expectText(a.$("#toast"), /^Not sent: /);
  await expectCount(a.message("can you read this?"), 0);
  assert.equal(await a.$("#composer-input").inputValue(), "can you read this?");
  await expectCount(drafts(a), 1);
  await expectText(drafts(a).locator(".draft-name"), "notes.pdf");
  await expectAttr(drafts(a), "data-state", "done");

  // once unblocked, the same files go out
  await rest(bob, "DELETE", "blocks/" + encodeURIComponent(alice.id));
  await a.$("#composer-input").press("Enter");
  const msg = b.message("can you read this?");
  await visible(msg);
  await expectText(msg.locator(".att-file .att-name"), "notes.pdf");
  await expectCount(drafts(a), 0);
});
