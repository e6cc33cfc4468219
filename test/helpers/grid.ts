// A grid file for tests: a WRN-16-1 trained 4 epochs on a tiny image folder, BadNets and a
// clean model, the given defenses (YAML list items).
export const tinyGrid = (defenses: string, data: string): string => `data: imagefolder:${data}
arch: wrn-16-1
seeds: [0]
epochs: 4
clean-ratio: 0.5
evidence: 0
train:
  batch-size: 16
  lr: 0.05
attacks:
  - name: badnets-square
    target: 2
    poison-rate: 0.2
  - name: none
    measure-with: badnets-square
defenses:
${defenses}`;
