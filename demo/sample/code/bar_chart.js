// Draw a simple bar chart on an HTML canvas.

export function drawBarChart(canvas, values, colour = "#1d70b8") {
  const ctx = canvas.getContext("2d");
  const width = canvas.width;
  const height = canvas.height;
  const max = Math.max(...values, 1);
  const barWidth = width / (values.length * 1.5);
  ctx.clearRect(0, 0, width, height);
  values.forEach((value, i) => {
    const barHeight = (value / max) * (height - 20);
    const x = i * barWidth * 1.5 + barWidth * 0.25;
    ctx.fillStyle = colour;
    ctx.fillRect(x, height - barHeight, barWidth, barHeight);
  });
}

export function normalise(values) {
  const total = values.reduce((sum, v) => sum + v, 0);
  return total === 0 ? values.map(() => 0) : values.map((v) => v / total);
}
