/* API keys page: copy the new secret to the clipboard. */
(function () {
  "use strict";
  const button = document.getElementById("copy-secret");
  if (!button) return;
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.target);
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (error) {
      field.select();
      document.execCommand("copy");
    }
    button.textContent = "Copied";
  });
})();
